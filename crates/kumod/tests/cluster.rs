//! A cluster on one machine (issue 13): two `kumod controller`s on one PostgreSQL database and
//! three `kumod agent`s (sim driver) that join with one-time tokens and are reached over HTTPS.
//! One test walks through what an operator does, because the fixture (a database, five
//! processes) is what costs.
//!
//! Needs PostgreSQL: KUMO_TEST_POSTGRES_URL (scripts/postgres.sh prints it); scripts/test.sh
//! sets it. Without it the test fails: a missing prerequisite is never a silent skip.

mod common;

use common::{fixture_image_cache, kumod_binary, PostgresDb, FIXTURE_IMAGE};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds without a heartbeat after which the controllers call a host unreachable (short, for
/// the test; the default is 30).
const UNREACHABLE_AFTER: u64 = 6;

/// One kumod process of the cluster, killed on drop.
struct Proc {
    name: String,
    child: Option<Child>,
    dir: PathBuf,
}

impl Proc {
    fn start(name: &str, dir: &Path, args: &[String]) -> Proc {
        std::fs::create_dir_all(dir).expect("data dir");
        let log = std::fs::File::create(dir.join("kumod.log")).expect("log");
        let child = Command::new(kumod_binary())
            .args(args)
            .env("RUST_LOG", "info,kumo_control=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn kumod");
        Proc { name: name.into(), child: Some(child), dir: dir.to_path_buf() }
    }

    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("kumod.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        format!("--- {} ---\n{}", self.name, lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. SIGSTOP: the process is there but answers nothing, as if cut off).
    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we own.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for<T>(what: &str, timeout: Duration, logs: &dyn Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    http: Client,
    controllers: Vec<Proc>,
    urls: Vec<String>,
    agents: Vec<Proc>,
    token: String,
    fingerprint: String,
    images: tempfile::TempDir,
    // Last: dropped after every process is killed.
    _db: PostgresDb,
}

impl Cluster {
    fn logs(&self) -> String {
        self.controllers.iter().chain(self.agents.iter()).map(Proc::log_tail).collect::<Vec<_>>().join("\n")
    }

    fn call(&self, c: usize, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.urls[c])).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    fn get(&self, c: usize, path: &str) -> (u16, Value) {
        self.call(c, reqwest::Method::GET, path, None)
    }

    fn post(&self, c: usize, path: &str, body: Value) -> (u16, Value) {
        self.call(c, reqwest::Method::POST, path, Some(body))
    }

    fn controller_args(&self, i: usize, db: &str, port: u16, tls: &[String]) -> Vec<String> {
        let mut a: Vec<String> = [
            "controller",
            "--data-dir",
            &self.dir.path().join(format!("c{i}")).to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database",
            db,
            "--image-cache",
            &self.images.path().to_string_lossy(),
            "--host-unreachable-seconds",
            &UNREACHABLE_AFTER.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend_from_slice(tls);
        a
    }

    fn join_token(&self, zone: &str) -> String {
        let (s, v) = self.post(0, "/v1/join-tokens", json!({"zone": zone}));
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    fn start_agent(&mut self, name: &str, zone: &str, token: &str) {
        let dir = self.dir.path().join(name);
        let port = free_port();
        let args: Vec<String> = [
            "agent",
            "--data-dir",
            &dir.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--controller",
            &self.urls.join(","),
            "--controller-fingerprint",
            &self.fingerprint,
            "--join-token",
            token,
            "--zone",
            zone,
            "--driver",
            "sim",
            "--image-cache",
            "/nonexistent",
            "--host-name",
            name,
            "--host-vcpus",
            "4",
            "--host-memory-mib",
            "8192",
            "--host-disk-gib",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        self.agents.push(Proc::start(name, &dir, &args));
    }

    fn hosts(&self, c: usize) -> Vec<Value> {
        let (s, v) = self.get(c, "/v1/hosts?limit=100");
        assert_eq!(s, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    fn host_state(&self, c: usize, name: &str) -> Option<String> {
        self.hosts(c).iter().find(|h| h["name"] == name).map(|h| h["state"].as_str().unwrap_or("").to_string())
    }

    fn instance(&self, c: usize, name: &str) -> Value {
        let (s, v) = self.get(c, &format!("/v1/instances/{name}?project=demo"));
        assert_eq!(s, 200, "{v}");
        v
    }

    fn create(&self, c: usize, name: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"name": name, "image": FIXTURE_IMAGE, "instance_type": "k1-nano"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.post(c, "/v1/instances?project=demo", body)
    }

    fn wait_running(&self, c: usize, name: &str) -> Value {
        wait_for(&format!("{name} running"), Duration::from_secs(60), &|| self.logs(), || {
            let v = self.instance(c, name);
            assert_ne!(v["state"], "failed", "{v}");
            (v["state"] == "running").then_some(v)
        })
    }
}

#[test]
fn a_cluster_of_two_controllers_and_three_hosts() {
    let db = PostgresDb::create();
    let dir = tempfile::Builder::new().prefix("kcl").tempdir_in("/tmp").expect("dir");
    let http = Client::builder()
        .timeout(Duration::from_secs(30))
        // The controllers' certificate is self-signed; the agents pin it by fingerprint.
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let mut cl = Cluster {
        dir,
        http,
        controllers: Vec::new(),
        urls: Vec::new(),
        agents: Vec::new(),
        token: String::new(),
        fingerprint: String::new(),
        images: fixture_image_cache(),
        _db: db,
    };
    let db_url = cl._db.url.clone();

    // Two controllers; the second serves the first one's certificate (one fingerprint to pin).
    let p0 = free_port();
    let args = cl.controller_args(0, &db_url, p0, &["--tls-self-signed".into()]);
    cl.controllers.push(Proc::start("c0", &cl.dir.path().join("c0"), &args));
    cl.urls.push(format!("https://127.0.0.1:{p0}"));
    let c0 = cl.dir.path().join("c0");
    wait_for("controller c0", Duration::from_secs(60), &|| cl.logs(), || c0.join("kumod.addr").exists().then_some(()));
    let tls_dir = c0.join("tls");
    let p1 = free_port();
    let args = cl.controller_args(
        1,
        &db_url,
        p1,
        &[
            "--tls-cert".into(),
            tls_dir.join("cert.pem").to_string_lossy().into_owned(),
            "--tls-key".into(),
            tls_dir.join("key.pem").to_string_lossy().into_owned(),
        ],
    );
    cl.controllers.push(Proc::start("c1", &cl.dir.path().join("c1"), &args));
    cl.urls.push(format!("https://127.0.0.1:{p1}"));
    let c1 = cl.dir.path().join("c1");
    wait_for("controller c1", Duration::from_secs(60), &|| cl.logs(), || c1.join("kumod.addr").exists().then_some(()));
    cl.fingerprint = std::fs::read_to_string(tls_dir.join("fingerprint")).expect("fingerprint").trim().to_string();
    cl.token = std::fs::read_to_string(c0.join("admin-token")).expect("admin token").trim().to_string();

    // Zones, join tokens; an unknown zone is refused with nothing made.
    for zone in ["zone-a", "zone-b"] {
        let (s, v) = cl.post(0, "/v1/zones", json!({"name": zone}));
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = cl.post(1, "/v1/join-tokens", json!({"zone": "nowhere"}));
    assert_eq!(s, 400, "{v}");

    // Three hosts join, through either controller.
    let tokens = [cl.join_token("zone-a"), cl.join_token("zone-a"), cl.join_token("zone-b")];
    for (i, zone) in ["zone-a", "zone-a", "zone-b"].iter().enumerate() {
        let name = format!("h{}", i + 1);
        cl.start_agent(&name, zone, &tokens[i]);
    }
    wait_for("3 ready hosts", Duration::from_secs(60), &|| cl.logs(), || {
        let hosts = cl.hosts(1);
        (hosts.len() == 3 && hosts.iter().all(|h| h["state"] == "ready")).then_some(())
    });
    let hosts = cl.hosts(0);
    let zone_of = |n: &str| hosts.iter().find(|h| h["name"] == n).map(|h| h["zone"].clone()).unwrap_or_default();
    assert_eq!((zone_of("h1"), zone_of("h3")), (json!("zone-a"), json!("zone-b")), "{hosts:?}");

    // A join token works once: used again (here directly, as a stolen token would be) → refused.
    let agent_join = json!({
        "token": tokens[0], "zone": null,
        "info": {"name": "h9", "driver": "sim", "accelerator": "simulated", "accelerator_reason": "",
                 "vcpus": 1, "memory_mib": 512, "disk_gib": 1, "gpus": 0},
        "address": "https://127.0.0.1:1", "fingerprint": cl.fingerprint, "agent_secret": "x".repeat(40),
    });
    let resp = cl.http.post(format!("{}/agent/v1/join", cl.urls[1])).json(&agent_join).send().expect("join");
    assert_eq!(resp.status().as_u16(), 401, "{}", resp.text().unwrap_or_default());
    assert_eq!(cl.hosts(0).len(), 3, "nothing was added by the refused join");

    // An agent cannot act for another host: h1's credential with h2's id → 403.
    let m1: Value =
        serde_json::from_slice(&std::fs::read(cl.dir.path().join("h1/membership.json")).expect("m1")).expect("json");
    let m2: Value =
        serde_json::from_slice(&std::fs::read(cl.dir.path().join("h2/membership.json")).expect("m2")).expect("json");
    let hb = json!({"host_id": m2["host_id"], "info": agent_join["info"], "address": "https://127.0.0.1:1",
                    "fingerprint": cl.fingerprint});
    let resp = cl
        .http
        .post(format!("{}/agent/v1/heartbeat", cl.urls[0]))
        .bearer_auth(m1["credential"].as_str().expect("credential"))
        .json(&hb)
        .send()
        .expect("heartbeat");
    assert_eq!(resp.status().as_u16(), 403, "{}", resp.text().unwrap_or_default());
    // A user's token means nothing to the agents' protocol, nor to an agent's API.
    let resp =
        cl.http.post(format!("{}/agent/v1/heartbeat", cl.urls[0])).bearer_auth(&cl.token).json(&hb).send().expect("hb");
    assert_eq!(resp.status().as_u16(), 401);
    let h1_addr = std::fs::read_to_string(cl.dir.path().join("h1/agent.addr")).expect("agent.addr");
    let resp = cl
        .http
        .post(format!("https://{}/agent/v1/call", h1_addr.trim()))
        .bearer_auth(&cl.token)
        .json(&json!({"call": "host_info"}))
        .send()
        .expect("agent call");
    assert_eq!(resp.status().as_u16(), 401, "a tenant's or operator's token is refused by the agent API");

    // Instances through either controller spread over the hosts (most free memory first).
    let (s, v) = cl.post(0, "/v1/projects", json!({"name": "demo"}));
    assert_eq!(s, 201, "{v}");
    for i in 0..6 {
        let (s, v) = cl.create(i % 2, &format!("vm{i}"), json!({}));
        assert_eq!(s, 202, "{v}");
    }
    let mut per_host = std::collections::BTreeMap::<String, usize>::new();
    let mut on_h2 = None;
    for i in 0..6 {
        let v = cl.wait_running(1, &format!("vm{i}"));
        if v["host"] == "h2" {
            on_h2 = Some(format!("vm{i}"));
        }
        *per_host.entry(v["host"].as_str().expect("host").to_string()).or_default() += 1;
    }
    let on_h2 = on_h2.expect("an instance on h2");
    assert_eq!(per_host.values().copied().collect::<Vec<_>>(), vec![2, 2, 2], "spread evenly: {per_host:?}");

    // A zone asked for is a filter.
    let (s, v) = cl.create(1, "in-b", json!({"zone": "zone-b"}));
    assert_eq!(s, 202, "{v}");
    assert_eq!(cl.wait_running(0, "in-b")["host"], "h3");
    let (s, v) = cl.create(1, "nowhere", json!({"zone": "zone-x"}));
    assert_eq!(s, 400, "{v}");

    // Cordon h3: zone-b has no other host, so a create there is refused, saying why.
    let (s, v) = cl.post(0, "/v1/hosts/h3/cordon", json!({}));
    assert_eq!((s, &v["state"]), (200, &json!("cordoned")), "{v}");
    let (s, v) = cl.create(1, "refused", json!({"zone": "zone-b"}));
    assert!(s == 507 || s == 409, "{s} {v}");
    assert!(v["message"].as_str().unwrap_or("").contains("cordoned"), "the refusal says why: {v}");
    let (s, v) = cl.post(1, "/v1/hosts/h3/uncordon", json!({}));
    assert_eq!((s, &v["state"]), (200, &json!("ready")), "{v}");

    // kill -9 of an agent: its host becomes unreachable within the deadline.
    let killed_at = Instant::now();
    cl.agents[1].kill9();
    wait_for("h2 unreachable", Duration::from_secs(UNREACHABLE_AFTER + 10), &|| cl.logs(), || {
        (cl.host_state(0, "h2").as_deref() == Some("unreachable")).then_some(())
    });
    assert!(killed_at.elapsed() <= Duration::from_secs(30), "{:?}", killed_at.elapsed());
    // Its instances show `unknown`, never a stale `running` (on both controllers).
    for c in 0..2 {
        wait_for("unknown", Duration::from_secs(10), &|| cl.logs(), || {
            let v = cl.instance(c, &on_h2);
            (v["state"] == "unknown").then_some(())
        });
    }
    assert!(cl.instance(0, &on_h2)["state_reason"].as_str().unwrap_or("").contains("last recorded state: running"));
    // New instances go to the hosts still there.
    let (s, v) = cl.create(0, "after-h2", json!({}));
    assert_eq!(s, 202, "{v}");
    assert_ne!(cl.wait_running(0, "after-h2")["host"], "h2");

    // kill -9 of a controller: the other one serves and does the background work (it takes the
    // lease over once it expired).
    cl.controllers[0].kill9();
    let (s, v) = cl.create(1, "after-c0", json!({}));
    assert_eq!(s, 202, "{v}");
    cl.wait_running(1, "after-c0");
    for a in cl.agents.iter_mut() {
        assert!(a.exited().is_none() || a.name == "h2", "agent {} exited:\n{}", a.name, a.log_tail());
    }
}
