//! A cluster on one machine for the tests (issue 13): controllers (`kumod controller`) on one
//! PostgreSQL database and agents (`kumod agent`) that join them with one-time tokens, as
//! scripts/cluster.sh makes it. Every process is killed and every directory removed on drop.

use super::{kumod_binary, PostgresDb, FIXTURE_IMAGE};
use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds without a heartbeat after which the controllers call a host unreachable (short, for
/// the test; the default is 30).
pub const UNREACHABLE_AFTER: u64 = 6;

/// One kumod process of the cluster, killed on drop.
pub struct Proc {
    pub name: String,
    pub child: Option<Child>,
    pub dir: PathBuf,
    pub args: Vec<String>,
}

impl Proc {
    pub fn start(name: &str, dir: &Path, args: &[String]) -> Proc {
        std::fs::create_dir_all(dir).expect("data dir");
        let _ = std::fs::remove_file(dir.join("kumod.log"));
        Proc::start_appending(name, dir, args)
    }

    /// [`Proc::start`], its log appended to the one of an earlier start.
    pub fn start_appending(name: &str, dir: &Path, args: &[String]) -> Proc {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("kumod.log")).expect("log");
        let child = Command::new(kumod_binary())
            .args(args)
            .env("RUST_LOG", "info,kumo_control=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn kumod");
        Proc { name: name.into(), child: Some(child), dir: dir.to_path_buf(), args: args.to_vec() }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(self.dir.join("kumod.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        format!("--- {} ---\n{}", self.name, lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. SIGSTOP: the process is there but answers nothing, as if cut off).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on a child we own.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn wait_for<T>(what: &str, timeout: Duration, logs: &dyn Fn() -> String, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub http: Client,
    pub controllers: Vec<Proc>,
    pub urls: Vec<String>,
    pub agents: Vec<Proc>,
    pub token: String,
    pub fingerprint: String,
    pub images: tempfile::TempDir,
    // Last: dropped after every process is killed.
    pub _db: PostgresDb,
}

impl Cluster {
    /// A fresh database and `controllers` controllers on it (the first makes the certificate,
    /// the others serve it too: agents pin one fingerprint), public images from `images`.
    pub fn start(controllers: usize, images: tempfile::TempDir) -> Cluster {
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
            images,
            _db: db,
        };
        let db_url = cl._db.url.clone();
        let tls_dir = cl.dir.path().join("c0/tls");
        for i in 0..controllers {
            let port = free_port();
            let tls: Vec<String> = if i == 0 {
                vec!["--tls-self-signed".into()]
            } else {
                vec![
                    "--tls-cert".into(),
                    tls_dir.join("cert.pem").to_string_lossy().into_owned(),
                    "--tls-key".into(),
                    tls_dir.join("key.pem").to_string_lossy().into_owned(),
                ]
            };
            let args = cl.controller_args(i, &db_url, port, &tls);
            let cdir = cl.dir.path().join(format!("c{i}"));
            cl.controllers.push(Proc::start(&format!("c{i}"), &cdir, &args));
            cl.urls.push(format!("https://127.0.0.1:{port}"));
            wait_for(&format!("controller c{i}"), Duration::from_secs(60), &|| cl.logs(), || {
                cdir.join("kumod.addr").exists().then_some(())
            });
        }
        cl.fingerprint = std::fs::read_to_string(tls_dir.join("fingerprint")).expect("fingerprint").trim().to_string();
        cl.token =
            std::fs::read_to_string(cl.dir.path().join("c0/admin-token")).expect("admin token").trim().to_string();
        cl
    }

    pub fn logs(&self) -> String {
        self.controllers.iter().chain(self.agents.iter()).map(Proc::log_tail).collect::<Vec<_>>().join("\n")
    }

    pub fn call(&self, c: usize, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.urls[c])).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub fn get(&self, c: usize, path: &str) -> (u16, Value) {
        self.call(c, reqwest::Method::GET, path, None)
    }

    pub fn post(&self, c: usize, path: &str, body: Value) -> (u16, Value) {
        self.call(c, reqwest::Method::POST, path, Some(body))
    }

    pub fn controller_args(&self, i: usize, db: &str, port: u16, tls: &[String]) -> Vec<String> {
        // One master key for every controller (it opens S3 access keys' sealed secrets).
        let master = self.dir.path().join("master.key");
        if !master.exists() {
            std::fs::write(&master, [7u8; 32]).expect("write the controllers' master key");
        }
        let mut a: Vec<String> = [
            "controller",
            "--data-dir",
            &self.dir.path().join(format!("c{i}")).to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--s3-listen",
            "127.0.0.1:0",
            "--database",
            db,
            "--image-cache",
            &self.images.path().to_string_lossy(),
            "--host-unreachable-seconds",
            &UNREACHABLE_AFTER.to_string(),
            "--master-key-file",
            &master.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend_from_slice(tls);
        a
    }

    pub fn join_token(&self, zone: &str) -> String {
        let (s, v) = self.post(0, "/v1/join-tokens", json!({"zone": zone}));
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// A sim-driver agent host `name` joining `zone` with `token`.
    pub fn start_agent(&mut self, name: &str, zone: &str, token: &str) {
        let sim =
            ["--driver", "sim", "--image-cache", "/nonexistent", "--host-vcpus", "4", "--host-memory-mib", "8192"];
        self.start_agent_with(name, zone, token, &sim.map(String::from));
    }

    /// An agent host `name` joining `zone` with `token`, with `extra` flags (driver, namespace).
    pub fn start_agent_with(&mut self, name: &str, zone: &str, token: &str, extra: &[String]) {
        let args = self.agent_args(name, zone, token, free_port(), &self.urls, extra);
        self.agents.push(Proc::start(name, &self.dir.path().join(name), &args));
    }

    /// Starts agent `i` again on its data directory, without its (spent) join token: it comes
    /// back as the host it joined as.
    pub fn restart_agent(&mut self, i: usize) {
        self.restart_agent_with(i, &[]);
    }

    /// [`Cluster::restart_agent`] with `extra` flags added.
    pub fn restart_agent_with(&mut self, i: usize, extra: &[String]) {
        let a = &mut self.agents[i];
        a.kill9();
        let mut args = a.args.clone();
        args.extend_from_slice(extra);
        if let Some(at) = args.iter().position(|x| x == "--join-token") {
            args.drain(at..at + 2);
        }
        let (name, dir) = (a.name.clone(), a.dir.clone());
        *a = Proc::start_appending(&name, &dir, &args);
    }

    /// The host's view (operators).
    pub fn host(&self, c: usize, name: &str) -> Value {
        let (s, v) = self.get(c, &format!("/v1/hosts/{name}"));
        assert_eq!(s, 200, "{v}");
        v
    }

    pub fn hosts(&self, c: usize) -> Vec<Value> {
        let (s, v) = self.get(c, "/v1/hosts?limit=100");
        assert_eq!(s, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn host_state(&self, c: usize, name: &str) -> Option<String> {
        self.hosts(c).iter().find(|h| h["name"] == name).map(|h| h["state"].as_str().unwrap_or("").to_string())
    }

    pub fn instance(&self, c: usize, name: &str) -> Value {
        let (s, v) = self.get(c, &format!("/v1/instances/{name}?project=demo"));
        assert_eq!(s, 200, "{v}");
        v
    }

    pub fn create(&self, c: usize, name: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({"name": name, "image": FIXTURE_IMAGE, "instance_type": "k1-nano"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.post(c, "/v1/instances?project=demo", body)
    }

    pub fn wait_running(&self, c: usize, name: &str) -> Value {
        wait_for(&format!("{name} running"), Duration::from_secs(60), &|| self.logs(), || {
            let v = self.instance(c, name);
            assert_ne!(v["state"], "failed", "{v}");
            (v["state"] == "running").then_some(v)
        })
    }
}

// ---- Pieces of the high-availability tests (cluster_ha.rs) ----

impl Cluster {
    /// The flags of agent `name` listening on `port` of loopback, heartbeating to `controllers`.
    pub fn agent_args(
        &self,
        name: &str,
        zone: &str,
        token: &str,
        port: u16,
        controllers: &[String],
        extra: &[String],
    ) -> Vec<String> {
        let dir = self.dir.path().join(name);
        let mut args: Vec<String> = [
            "agent",
            "--data-dir",
            &dir.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--controller",
            &controllers.join(","),
            "--controller-fingerprint",
            &self.fingerprint,
            "--join-token",
            token,
            "--zone",
            zone,
            "--host-name",
            name,
            "--host-disk-gib",
            "200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend_from_slice(extra);
        args
    }

    /// An agent host whose every connection with the controllers goes through `cable`: its
    /// heartbeats to a relay in front of each controller, the controllers' calls to a relay in
    /// front of its API (the address it advertises). Cutting the cable cuts the host off.
    pub fn start_agent_behind(&mut self, cable: &Cable, name: &str, zone: &str, token: &str, extra: &[String]) {
        let port = free_port();
        let to_controllers: Vec<String> = self
            .urls
            .iter()
            .map(|u| {
                let target = u.trim_start_matches("https://").parse().expect("controller address");
                format!("https://{}", cable.relay(target))
            })
            .collect();
        let api = cable.relay(format!("127.0.0.1:{port}").parse().expect("agent address"));
        let mut args = self.agent_args(name, zone, token, port, &to_controllers, extra);
        args.extend(["--advertise".to_string(), api.to_string()]);
        self.agents.push(Proc::start(name, &self.dir.path().join(name), &args));
    }

    /// Index of the agent named `name`.
    pub fn agent_index(&self, name: &str) -> usize {
        self.agents.iter().position(|a| a.name == name).unwrap_or_else(|| panic!("no agent {name}"))
    }

    /// Calls agent `name`'s API directly (not through any cable), as a controller does: `call`
    /// is a `wire::Call` (`{"call": "status", "args": {"id": …}}`); returns the `ok` of its reply.
    pub fn agent_call(&self, name: &str, call: Value) -> Value {
        let dir = self.dir.path().join(name);
        let m: Value = serde_json::from_slice(&std::fs::read(dir.join("membership.json")).expect("membership"))
            .expect("membership json");
        let addr = std::fs::read_to_string(dir.join("agent.addr")).expect("agent.addr");
        let resp = self
            .http
            .post(format!("https://{}/agent/v1/call", addr.trim()))
            .bearer_auth(m["agent_secret"].as_str().expect("agent secret"))
            .json(&call)
            .send()
            .expect("agent call");
        assert_eq!(resp.status().as_u16(), 200, "agent {name}: {call}");
        let reply: Value = resp.json().expect("reply");
        assert!(reply.get("ok").is_some(), "agent {name}: {call} → {reply}");
        reply["ok"].clone()
    }

    /// The instance ids agent `name` has guests (or their disks) of.
    pub fn agent_guests(&self, name: &str) -> Vec<String> {
        let v = self.agent_call(name, json!({"call": "list_instances", "args": {}}));
        v.as_array().expect("ids").iter().map(|i| i.as_str().expect("id").to_string()).collect()
    }

    /// What agent `name` says of instance `id`: `Absent`, `Provisioned` or `Running`.
    pub fn agent_guest_status(&self, name: &str, id: &str) -> String {
        let v = self.agent_call(name, json!({"call": "status", "args": {"id": id}}));
        v.as_str().expect("status").to_string()
    }

    /// The console of instance `id`'s guest on agent `name`, from its start.
    pub fn agent_console(&self, name: &str, id: &str) -> String {
        let v = self.agent_call(name, json!({"call": "serial", "args": {"id": id, "offset": 0, "max": 1 << 20}}));
        let bytes: Vec<u8> =
            v["bytes"].as_array().expect("bytes").iter().map(|b| b.as_u64().expect("byte") as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Which controller does the background work now (holds the `background` lease), as the
    /// live controllers say (`runs_here` of their `instances` reconciler); None while nobody does.
    pub fn leader(&self) -> Option<usize> {
        let leading: Vec<usize> = (0..self.controllers.len())
            .filter(|&c| self.controllers[c].child.is_some())
            .filter(|&c| {
                let (s, v) = self.get(c, "/v1/system/reconcilers");
                assert_eq!(s, 200, "{v}");
                v.as_array().into_iter().flatten().any(|r| r["name"] == "instances" && r["runs_here"] == true)
            })
            .collect();
        assert!(leading.len() <= 1, "two controllers do the background work at once: {leading:?}");
        leading.first().copied()
    }

    /// Every instance of project `project` (up to 1000).
    pub fn instances_of(&self, c: usize, project: &str) -> Vec<Value> {
        let (s, v) = self.get(c, &format!("/v1/instances?project={project}&limit=1000"));
        assert_eq!(s, 200, "{v}");
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

/// A network cable between one agent and the controllers, made of TCP relays in the test process
/// (no namespace, no rule of the machine touched). [`Cable::cut`] closes every connection through
/// it and then holds new ones open without carrying a byte (as a cut link does: nothing answers,
/// the callers time out); [`Cable::mend`] drops those and carries new connections again.
#[derive(Clone, Default)]
pub struct Cable(std::sync::Arc<CableState>);

#[derive(Default)]
pub struct CableState {
    cut: std::sync::atomic::AtomicBool,
    /// Both ends of every connection carried, to shut them at a cut.
    live: std::sync::Mutex<Vec<std::net::TcpStream>>,
    /// Connections accepted while cut, held silent.
    held: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl Cable {
    /// A relay on a free loopback port carrying connections to `target`; returns its address.
    pub fn relay(&self, target: std::net::SocketAddr) -> std::net::SocketAddr {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("relay addr");
        // The relay ends when the cable is dropped.
        let weak = std::sync::Arc::downgrade(&self.0);
        std::thread::spawn(move || {
            while let Some(state) = weak.upgrade() {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        drop(state);
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let _ = client.set_nonblocking(false);
                if state.cut.load(Ordering::SeqCst) {
                    state.held.lock().expect("held").push(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else { continue };
                let mut live = state.live.lock().expect("live");
                for s in [&client, &server] {
                    if let Ok(c) = s.try_clone() {
                        live.push(c);
                    }
                }
                drop(live);
                for (mut from, mut to) in
                    [(client.try_clone(), server.try_clone()), (server.try_clone(), client.try_clone())]
                        .into_iter()
                        .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                        let _ = from.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        addr
    }

    /// Cuts the cable: every connection through it is closed, new ones hang.
    pub fn cut(&self) {
        use std::sync::atomic::Ordering;
        self.0.cut.store(true, Ordering::SeqCst);
        for s in self.0.live.lock().expect("live").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Mends the cable: the connections held while cut are closed, new ones are carried.
    pub fn mend(&self) {
        use std::sync::atomic::Ordering;
        self.0.cut.store(false, Ordering::SeqCst);
        for s in self.0.held.lock().expect("held").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}
