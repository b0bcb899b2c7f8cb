//! Browser tests of the dashboard: real headless Chromium (Debian's `chromium` +
//! `chromium-driver`, installed by `scripts/install-deps.sh --with-browser`), driven over
//! WebDriver with `fantoccini`, against a real kumod on the sim driver.
//!
//! Without Chromium these tests fail when `CI` is set and skip with a printed reason elsewhere.
//! Screenshots (laptop and phone widths) go to `target/dashboard-screenshots/`.
//!
//! The sim driver gets `--sim-latency-ms`, so instances sit visibly in their transitional states
//! and the tests can see the page update them without a reload.

mod common;

use common::{fixture_image_cache, Kumod};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const IMAGE: &str = common::FIXTURE_IMAGE;
const WAIT: Duration = Duration::from_secs(30);
const LAPTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);

/// Whether Chromium is here; in CI its absence is a failure, elsewhere a skip.
fn browser_available(test: &str) -> bool {
    let ok = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !ok {
        let why = format!(
            "{test}: needs {CHROMIUM} and {CHROMEDRIVER} (Debian packages chromium and chromium-driver; \
             scripts/install-deps.sh --with-browser installs them)"
        );
        assert!(!common::strict(), "{why}");
        eprintln!("SKIPPED {why}");
    }
    ok
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target.join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// chromedriver on a free port, with its own Chromium profile; killed on drop.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::Builder::new().prefix("kchrome").tempdir_in("/tmp").expect("profile dir");
        Driver { child, url, _profile: profile }
    }

    async fn browser(&self) -> Client {
        let profile = self._profile.path().display().to_string();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            &format!("--user-data-dir={profile}"),
            &format!("--window-size={},{}", LAPTOP.0, LAPTOP.1),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), json!({"binary": CHROMIUM, "args": args}));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector).capabilities(caps).connect(&self.url).await.expect("WebDriver session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kumod on the sim driver (each operation takes `latency_ms`) with the fixture image, a
/// project `demo` where `alice` is a collaborator, and a project `other` she is not in.
struct Cloud {
    k: Kumod,
    images: tempfile::TempDir,
}

fn cloud(latency_ms: u64) -> Cloud {
    cloud_with(latency_ms, &[])
}

/// [`cloud`] with more kumod flags.
fn cloud_with(latency_ms: u64, extra: &[&str]) -> Cloud {
    let images = fixture_image_cache();
    let cache = images.path().to_string_lossy().into_owned();
    let latency = latency_ms.to_string();
    let mut flags =
        vec!["--driver", "sim", "--image-cache", &cache, "--sim-latency-ms", &latency, "--metrics-interval", "1"];
    flags.extend_from_slice(extra);
    let k = Kumod::start(&flags);
    k.create_project("demo");
    k.create_project("other");
    let (s, v) = k.post("/v1/users", json!({"name": "alice", "password": "correct horse"}));
    assert_eq!(s, 201, "{v}");
    let (s, v) = k.post("/v1/projects/demo/members", json!({"user": "alice", "role": "collaborator"}));
    assert!(s == 200 || s == 201, "{v}");
    Cloud { k, images }
}

/// Runs a browser flow on a fresh tokio runtime (the harness's HTTP client is blocking).
fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime").block_on(f)
}

struct Page<'a> {
    c: &'a Client,
    base: &'a str,
    shots: PathBuf,
}

impl Page<'_> {
    async fn goto(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Takes the screenshot at laptop and phone widths, then goes back to laptop width.
    async fn shots(&self, name: &str) {
        self.c.set_window_size(LAPTOP.0, LAPTOP.1).await.expect("window size");
        self.shot(&format!("{name}-laptop")).await;
        self.c.set_window_size(PHONE.0, PHONE.1).await.expect("window size");
        self.shot(&format!("{name}-phone")).await;
        self.c.set_window_size(LAPTOP.0, LAPTOP.1).await.expect("window size");
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        e.clear().await.ok();
        e.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    async fn click(&self, css: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
        e.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn body_text(&self) -> String {
        match self.c.find(Locator::Css("body")).await {
            Ok(b) => b.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn path(&self) -> String {
        self.c.current_url().await.map(|u| u.path().to_string()).unwrap_or_default()
    }

    /// Waits for `pred` on the page, with a deadline and the page's text in the failure message.
    async fn wait_for(&self, what: &str, mut pred: impl AsyncPred) {
        let deadline = Instant::now() + WAIT;
        loop {
            if pred.check(self.c).await {
                return;
            }
            if Instant::now() > deadline {
                let name = format!("FAILED-{}", what.replace(|c: char| !c.is_ascii_alphanumeric(), "-"));
                self.shot(&name).await;
                panic!(
                    "waited {WAIT:?} for {what}; at {} the page says:\n{}",
                    self.path().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The state badge of the instance detail page (`#state[data-state]`).
    async fn state(&self) -> Option<String> {
        let e = self.c.find(Locator::Css("#state")).await.ok()?;
        e.attr("data-state").await.ok().flatten()
    }

    /// Evaluates `script` (which returns a value or a promise) in the page.
    async fn eval(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    async fn wait_state(&self, state: &str) {
        let want = state.to_string();
        self.wait_for(&format!("state {state}"), StatePred(want)).await;
    }
}

/// A condition on the page (async closures are not object-safe on stable; a small trait is).
trait AsyncPred {
    async fn check(&mut self, c: &Client) -> bool;
}

struct StatePred(String);
impl AsyncPred for StatePred {
    async fn check(&mut self, c: &Client) -> bool {
        match c.find(Locator::Css("#state")).await {
            Ok(e) => e.attr("data-state").await.ok().flatten().as_deref() == Some(self.0.as_str()),
            Err(_) => false,
        }
    }
}

struct PathPred(String);
impl AsyncPred for PathPred {
    async fn check(&mut self, c: &Client) -> bool {
        c.current_url().await.map(|u| u.path() == self.0).unwrap_or(false)
    }
}

struct TextPred(&'static str, String);
impl AsyncPred for TextPred {
    async fn check(&mut self, c: &Client) -> bool {
        match c.find(Locator::Css(self.0)).await {
            Ok(e) => e.text().await.map(|t| t.contains(&self.1)).unwrap_or(false),
            Err(_) => false,
        }
    }
}

/// Sets a marker on `window`; it survives only as long as the page is not reloaded.
const SET_MARKER: &str = "window.__kumoNoReload = 'still here'; return true;";
const GET_MARKER: &str = "return window.__kumoNoReload || null;";

#[test]
fn tenant_creates_stops_and_deletes_an_instance_in_the_browser() {
    if !browser_available("tenant_creates_stops_and_deletes_an_instance_in_the_browser") {
        return;
    }
    let cloud = cloud(1500);
    // A price for root disks, so the billing page has lines (and its charts by day and resource).
    let (status, v) = cloud.k.send_put("/v1/system/prices", json!({"kind": "disk", "unit_price": "100.00"}));
    assert!(status == 200 || status == 201, "{v}");
    let driver = Driver::start();
    let base = cloud.k.url.clone();
    let upload = cloud.images.path().join(IMAGE).join("disk.qcow2");
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };

        // Not logged in: every page leads to the login form.
        p.goto("/projects/demo/instances").await;
        p.wait_for("the login page", PathPred("/login".into())).await;
        p.shots("01-login").await;
        p.fill("#username", "alice").await;
        p.fill("#password", "wrong password").await;
        p.click("#login-submit").await;
        p.wait_for("the login error", TextPred("#login-error", "wrong user name or password".into())).await;
        p.fill("#password", "correct horse").await;
        p.click("#login-submit").await;
        p.wait_for("the instances page after login", PathPred("/projects/demo/instances".into())).await;
        assert!(p.body_text().await.contains("No instances yet"), "empty state missing: {}", p.body_text().await);
        p.shots("02-instances-empty").await;

        // The create form checks names before submitting (the API's rule as an HTML pattern).
        p.click("#new-instance").await;
        p.wait_for("the create form", PathPred("/projects/demo/instances/new".into())).await;
        p.fill("#name", "Web_1").await;
        let invalid = p.eval("return document.getElementById('name').checkValidity();").await;
        assert_eq!(invalid, json!(false), "the name field accepted 'Web_1'");
        p.fill("#name", "web1").await;
        let valid = p.eval("return document.getElementById('name').checkValidity();").await;
        assert_eq!(valid, json!(true), "the name field refused 'web1'");
        p.fill("#user_data", "#!/bin/sh\necho hello").await;
        p.shots("03-create-form").await;
        p.click("#create-submit").await;
        p.wait_for("the instance page", PathPred("/projects/demo/instances/web1".into())).await;
        p.eval(SET_MARKER).await;
        let first = p.state().await;
        p.shots("04-instance-creating").await;
        p.wait_state("running").await;
        assert_eq!(
            p.eval(GET_MARKER).await,
            json!("still here"),
            "the page was reloaded on the way from {first:?} to running"
        );
        assert_ne!(first.as_deref(), Some("running"), "the sim latency should show a transitional state first");
        p.shots("05-instance-running").await;

        // A duplicate name: the API's message, shown inline in the form.
        p.goto("/projects/demo/instances/new").await;
        p.fill("#name", "web1").await;
        p.click("#create-submit").await;
        p.wait_for("the duplicate-name error", TextPred("#form-error", "already exists".into())).await;
        p.shots("06-create-error").await;

        // CSRF: a state-changing request without the token is refused, even with the cookie.
        p.goto("/projects/demo/instances/web1").await;
        let status =
            p.eval("return fetch('/projects/demo/instances/web1/stop', {method: 'POST'}).then(r => r.status);").await;
        assert_eq!(status, json!(403), "a POST without the CSRF token must be refused");
        let status = p
            .eval(
                "return fetch('/projects/demo/instances/web1/stop', {method: 'POST', \
                 headers: {'X-CSRF-Token': 'forged'}}).then(r => r.status);",
            )
            .await;
        assert_eq!(status, json!(403), "a POST with a wrong CSRF token must be refused");
        assert_eq!(p.state().await.as_deref(), Some("running"), "the refused stop changed the instance");

        // Stop, with its confirmation; the state goes to stopped without a reload.
        p.click("#action-stop").await;
        c.accept_alert().await.expect("confirm the stop");
        p.wait_for("stopping", StatePred("stopping".into())).await;
        p.eval(SET_MARKER).await;
        p.wait_state("stopped").await;
        assert_eq!(p.eval(GET_MARKER).await, json!("still here"), "the page was reloaded while stopping");
        p.shots("07-instance-stopped").await;

        // Serial console and events are on the page; the console follows from its offset (each
        // line once, however many polls ran).
        let events = p.body_text().await;
        assert!(events.contains("state_changed"), "no events listed:\n{events}");
        let console = c.find(Locator::Css("#console")).await.expect("console").text().await.unwrap_or_default();
        assert_eq!(console.matches("kumo-guest: ready").count(), 1, "console:\n{console}");

        // Another tenant's project is 404, as in the API; so is its instance.
        p.goto("/projects/other/instances").await;
        let text = p.body_text().await;
        assert!(text.contains("404") && text.contains("not found"), "expected a 404 page:\n{text}");
        p.shots("08-other-project-404").await;
        let status = p.eval("return fetch('/projects/other/instances').then(r => r.status);").await;
        assert_eq!(status, json!(404));
        let status = p.eval("return fetch('/projects/other/billing').then(r => r.status);").await;
        assert_eq!(status, json!(404));

        // Import an image with the progress bar.
        p.goto("/projects/demo/images").await;
        p.fill("#import-name", "mine").await;
        let file = c.find(Locator::Css("#import-file")).await.expect("file input");
        file.send_keys(&upload.to_string_lossy()).await.expect("choose the file");
        p.click("#import-submit").await;
        p.wait_for("the imported image", TextPred("#images", "mine".into())).await;
        p.shots("09-images").await;

        p.goto("/projects/demo/billing").await;
        let text = p.body_text().await;
        assert!(text.contains("Month to date") && text.contains("Cost by day"), "{text}");
        p.shots("10-billing").await;

        // Delete, with its confirmation: back to the list, where it disappears without a reload.
        p.goto("/projects/demo/instances/web1").await;
        p.click("#action-delete").await;
        c.accept_alert().await.expect("confirm the delete");
        p.wait_for("the instance list", PathPred("/projects/demo/instances".into())).await;
        p.eval(SET_MARKER).await;
        p.wait_for("the empty list", TextPred("#instances", "No instances yet".into())).await;
        assert_eq!(p.eval(GET_MARKER).await, json!("still here"), "the list was reloaded");

        // Logging out ends the session: its token stops working.
        p.click("header .who button").await;
        p.wait_for("the login page after logout", PathPred("/login".into())).await;
        p.goto("/projects").await;
        p.wait_for("the login page for a logged-out user", PathPred("/login".into())).await;
        c.close().await.expect("close the browser");
    });
    let (s, v) = cloud.k.get("/v1/instances/web1?project=demo");
    assert_eq!(s, 404, "web1 should be gone: {v}");
    // Dashboard actions are in the audit log under the project, refused ones too.
    let (s, v) = cloud.k.get("/v1/system/audit-log?project=demo&limit=1000");
    assert_eq!(s, 200, "{v}");
    let stops: Vec<(u64, String)> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["path"] == "/projects/demo/instances/web1/stop")
        .map(|e| (e["status"].as_u64().unwrap_or(0), e["actor"].as_str().unwrap_or("").to_string()))
        .collect();
    assert!(stops.iter().any(|(s, _)| *s == 403), "the refused stops are not audited: {stops:?}");
    assert!(
        stops.iter().any(|(s, a)| *s < 400 && a.contains("alice")),
        "the stop is not audited as alice's: {stops:?}"
    );
}

#[test]
fn operator_logs_in_with_a_token_and_sees_hosts_projects_and_audit_log() {
    if !browser_available("operator_logs_in_with_a_token_and_sees_hosts_projects_and_audit_log") {
        return;
    }
    let cloud = cloud(0);
    let (s, v) =
        cloud.k.post("/v1/instances?project=demo", json!({"name": "db1", "image": IMAGE, "instance_type": "k1-nano"}));
    assert_eq!(s, 202, "{v}");
    let driver = Driver::start();
    let base = cloud.k.url.clone();
    let token = cloud.k.token.clone();
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };
        p.goto("/login").await;
        p.click("details summary").await;
        p.fill("#token", &token).await;
        p.click("#token-submit").await;
        p.wait_for("the project picker", PathPred("/projects".into())).await;
        let text = p.body_text().await;
        assert!(text.contains("demo") && text.contains("other"), "the operator sees every project:\n{text}");
        p.shots("20-projects").await;

        p.goto("/operator/hosts").await;
        let text = p.body_text().await;
        assert!(text.contains("vCPUs") && text.contains("Memory"), "no capacity bars:\n{text}");
        p.shots("21-hosts").await;

        p.goto("/operator/projects").await;
        let text = p.body_text().await;
        assert!(text.contains("demo") && text.contains("VPCs") && text.contains("Snapshots"), "{text}");
        p.shots("22-all-projects").await;

        p.goto("/operator/audit").await;
        let text = p.body_text().await;
        assert!(text.contains("/v1/instances"), "the audit log lacks the instance create:\n{text}");
        p.shots("23-audit").await;

        p.goto("/projects/demo/instances").await;
        p.wait_for("db1 running", TextPred("#instances", "running".into())).await;
        p.shots("24-instances-operator").await;
        p.goto("/projects/demo/instances/db1").await;
        p.wait_state("running").await;
        // Every chart loads from the metrics query (a plot, or "no samples"; never an error).
        const CHARTS: &str = "return Array.from(document.querySelectorAll('figure.chart')).map(f => \
            f.querySelector('.error') ? 'error: ' + f.querySelector('.error').textContent : \
            f.querySelector('.u-wrap') ? 'plot' : f.querySelector('.empty') ? 'empty' : 'loading');";
        // The monitoring task samples every second here: reload until the CPU chart has points.
        let deadline = Instant::now() + WAIT;
        loop {
            let charts = p.eval(CHARTS).await;
            let states: Vec<&str> = charts.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            assert_eq!(states.len(), 6, "six charts expected: {charts}");
            assert!(!states.iter().any(|s| s.starts_with("error")), "a chart shows an error: {charts}");
            if states[0] == "plot" {
                break;
            }
            if Instant::now() > deadline {
                let raw = p
                    .eval("return fetch('/projects/demo/instances/db1/metrics.json?metric=cpu&range=1h').then(r => r.text());")
                    .await;
                panic!("no CPU plot within {WAIT:?}: {charts}; the metrics query says {raw}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if !states.contains(&"loading") {
                p.c.refresh().await.expect("reload");
            }
        }
        p.c.execute("document.querySelector('#metrics-range').scrollIntoView();", vec![]).await.expect("scroll");
        p.shots("25-instance-charts").await;
        c.close().await.expect("close the browser");
    });
}

#[test]
fn tenant_gets_403_on_operator_pages_and_forged_logins() {
    if !browser_available("tenant_gets_403_on_operator_pages_and_forged_logins") {
        return;
    }
    let cloud = cloud(0);
    let driver = Driver::start();
    let base = cloud.k.url.clone();
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };
        p.goto("/login").await;
        p.fill("#username", "alice").await;
        p.fill("#password", "correct horse").await;
        p.click("#login-submit").await;
        p.wait_for("the project picker", PathPred("/projects".into())).await;
        let text = p.body_text().await;
        assert!(text.contains("demo") && !text.contains("other"), "alice sees only her project:\n{text}");
        assert!(!text.contains("Hosts"), "tenants get no operator links:\n{text}");
        // The login form is CSRF-protected too (double-submit cookie): a forged login is refused.
        let status = p
            .eval(
                "return fetch('/login', {method: 'POST', headers: {'Content-Type': \
                 'application/x-www-form-urlencoded'}, body: 'username=alice&password=correct+horse'}).then(r => r.status);",
            )
            .await;
        assert_eq!(status, json!(403), "a login POST without the login form's token must be refused");
        for path in ["/operator/hosts", "/operator/projects", "/operator/audit"] {
            let status = p.eval(&format!("return fetch('{path}').then(r => r.status);")).await;
            assert_eq!(status, json!(403), "{path}");
        }
        c.close().await.expect("close the browser");
    });
}

struct ExistsPred(&'static str);
impl AsyncPred for ExistsPred {
    async fn check(&mut self, c: &Client) -> bool {
        c.find(Locator::Css(self.0)).await.is_ok()
    }
}

/// Logs `alice` in through the login form and waits for the project picker.
async fn login_alice(p: &Page<'_>) {
    p.goto("/login").await;
    p.fill("#username", "alice").await;
    p.fill("#password", "correct horse").await;
    p.click("#login-submit").await;
    p.wait_for("the project picker", PathPred("/projects".into())).await;
}

/// Creates `name` in `demo` through the API and waits until it runs.
fn running_instance(k: &Kumod, name: &str) {
    let (s, v) =
        k.post("/v1/instances?project=demo", json!({"name": name, "image": IMAGE, "instance_type": "k1-nano"}));
    assert_eq!(s, 202, "{v}");
    let deadline = Instant::now() + WAIT;
    while k.get(&format!("/v1/instances/{name}?project=demo")).1["state"] != "running" {
        assert!(Instant::now() < deadline, "{name} did not reach running");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The status of a POST without the CSRF token (the session cookie is sent).
async fn post_status(p: &Page<'_>, path: &str) -> Value {
    p.eval(&format!(
        "return fetch('{path}', {{method: 'POST', headers: {{'Content-Type': \
         'application/x-www-form-urlencoded'}}, body: 'name=x&instance=vm1'}}).then(r => r.status);"
    ))
    .await
}

#[test]
fn tenant_creates_attaches_and_snapshots_a_volume_in_the_browser() {
    if !browser_available("tenant_creates_attaches_and_snapshots_a_volume_in_the_browser") {
        return;
    }
    let cloud = cloud(300);
    running_instance(&cloud.k, "vm1");
    let driver = Driver::start();
    let base = cloud.k.url.clone();
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };
        login_alice(&p).await;

        // The instance page shows its network interface and, for now, no volume.
        p.goto("/projects/demo/instances/vm1").await;
        p.wait_for("the interface", TextPred("#interfaces", "default".into())).await;
        p.wait_for("no volumes", TextPred("#instance-volumes", "No volume attached".into())).await;

        p.click("header nav a[href='/projects/demo/volumes']").await;
        p.wait_for("the volumes page", PathPred("/projects/demo/volumes".into())).await;
        p.wait_for("the empty state", TextPred("#volumes", "No volumes yet".into())).await;
        p.shots("30-volumes-empty").await;
        p.fill("#volume-name", "data1").await;
        p.fill("#volume-size", "2").await;
        p.click("#volume-submit").await;
        p.wait_for("data1 available", ExistsPred("tr[data-name='data1'] [data-state='available']")).await;

        // The API's message for a duplicate name, in the form.
        p.fill("#volume-name", "data1").await;
        p.fill("#volume-size", "1").await;
        p.click("#volume-submit").await;
        p.wait_for("the duplicate-name error", TextPred("#volume-form-error", "already exists".into())).await;

        // Attach to vm1 (the only instance, preselected); the state goes to attached live.
        p.click("tr[data-name='data1'] button[data-action='attach']").await;
        p.wait_for("data1 attached", ExistsPred("tr[data-name='data1'] [data-state='attached']")).await;
        p.shots("31-volumes-attached").await;

        // Snapshot it from its row.
        p.fill("tr[data-name='data1'] input[name='name'][placeholder='snapshot name']", "snap1").await;
        p.click("tr[data-name='data1'] button[data-action='snapshot']").await;
        p.wait_for("the snapshot", TextPred("#snapshots", "snap1".into())).await;

        // The instance page lists the attached volume.
        p.goto("/projects/demo/instances/vm1").await;
        p.wait_for("the attached volume", TextPred("#instance-volumes", "data1".into())).await;
        p.shots("32-instance-volumes").await;

        // Another tenant's pages are 404, as in the API.
        for path in ["/projects/other/volumes", "/projects/other/volumes/rows", "/projects/other/network"] {
            let status = p.eval(&format!("return fetch('{path}').then(r => r.status);")).await;
            assert_eq!(status, json!(404), "{path}");
        }
        // Every new state-changing route refuses a POST without the CSRF token.
        for path in [
            "/projects/demo/volumes",
            "/projects/demo/volumes/data1/detach",
            "/projects/demo/volumes/data1/delete",
            "/projects/demo/volumes/data1/backup",
            "/projects/demo/snapshots/snap1/delete",
            "/projects/demo/backups/b1/delete",
            "/projects/demo/network/vpcs",
            "/projects/demo/network/vpcs/default/subnets",
            "/projects/demo/network/vpcs/default/subnets/default/delete",
            "/projects/demo/network/security-groups/default/rules",
            "/projects/demo/network/ssh-keys",
            "/projects/demo/network/floating-ips",
            "/projects/demo/network/floating-ips/x/attach",
        ] {
            assert_eq!(post_status(&p, path).await, json!(403), "{path}");
        }

        // Detach, then delete, each with its confirmation.
        p.goto("/projects/demo/volumes").await;
        p.click("tr[data-name='data1'] button[data-action='detach']").await;
        c.accept_alert().await.expect("confirm the detach");
        p.wait_for("data1 available again", ExistsPred("tr[data-name='data1'] [data-state='available']")).await;

        // A refused action shows the API's message: encrypted volumes have no snapshots yet.
        p.fill("#volume-name", "secret").await;
        p.fill("#volume-size", "1").await;
        p.click("#volume-encrypted").await;
        p.click("#volume-submit").await;
        p.wait_for("secret available", ExistsPred("tr[data-name='secret'] [data-state='available']")).await;
        p.fill("tr[data-name='secret'] input[name='name'][placeholder='snapshot name']", "snap2").await;
        p.click("tr[data-name='secret'] button[data-action='snapshot']").await;
        p.wait_for("the snapshot refusal", TextPred("#volume-error", "snapshots of encrypted volumes".into())).await;

        // Delete, with its confirmation: the row goes.
        p.click("tr[data-name='secret'] button[data-action='delete']").await;
        c.accept_alert().await.expect("confirm the delete");
        let deadline = Instant::now() + WAIT;
        while c.find(Locator::Css("tr[data-name='secret']")).await.is_ok() {
            assert!(Instant::now() < deadline, "the deleted volume is still listed:\n{}", p.body_text().await);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.close().await.expect("close the browser");
    });
    let (s, v) = cloud.k.get("/v1/volumes/data1?project=demo");
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["size_gib"].as_i64(), v["encrypted"].as_bool()), (Some(2), Some(false)), "{v}");
    let (s, v) = cloud.k.get("/v1/snapshots/snap1?project=demo");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["volume"], "data1", "{v}");
    let (s, v) = cloud.k.get("/v1/snapshots/snap2?project=demo");
    assert_eq!(s, 404, "the refused snapshot exists: {v}");
    let deadline = Instant::now() + WAIT;
    while cloud.k.get("/v1/volumes/secret?project=demo").0 != 404 {
        assert!(Instant::now() < deadline, "the deleted volume is still there");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The attach went through the API's state machine: its events are the volume's.
    let (s, v) = cloud.k.get("/v1/events?project=demo&limit=1000");
    assert_eq!(s, 200, "{v}");
    let text = v.to_string();
    assert!(text.contains("volume_attach") && text.contains("volume_detach"), "{text}");
}

const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop";

#[test]
fn tenant_builds_a_network_in_the_browser() {
    if !browser_available("tenant_builds_a_network_in_the_browser") {
        return;
    }
    let cloud = cloud_with(0, &["--public-ip-pool", "203.0.113.0/29"]);
    running_instance(&cloud.k, "vm1");
    let driver = Driver::start();
    let base = cloud.k.url.clone();
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };
        login_alice(&p).await;
        p.goto("/projects/demo/network").await;
        p.wait_for("the empty ssh keys", TextPred("#ssh-keys", "No SSH keys yet".into())).await;

        // A VPC: first a bad range (the API's message), then a good one.
        p.fill("#vpc-name", "app").await;
        p.fill("#vpc-cidr", "ten/16").await;
        let valid = p.eval("return document.getElementById('vpc-cidr').checkValidity();").await;
        assert_eq!(valid, json!(false), "the range field accepted 'ten/16'");
        p.fill("#vpc-cidr", "10.10.1.5/16").await;
        p.click("#vpc-submit").await;
        p.wait_for("the CIDR error", TextPred("#network-error", "ipv4_cidr".into())).await;
        p.fill("#vpc-cidr", "10.10.0.0/16").await;
        p.click("#vpc-submit").await;
        p.wait_for("the new VPC", ExistsPred("[data-vpc='app']")).await;
        p.fill("input[data-subnet-name='app']", "web").await;
        p.fill("input[data-subnet-cidr='app']", "10.10.1.0/24").await;
        p.click("button[data-subnet-add='app']").await;
        p.wait_for("the new subnet", ExistsPred("[data-vpc='app'] tr[data-subnet='web']")).await;

        // A security group with one rule, through the rule editor.
        p.fill("#group-name", "www").await;
        p.click("#group-submit").await;
        p.wait_for("the new group", ExistsPred("details[data-group='www']")).await;
        p.click("details[data-group='www'] summary").await;
        p.fill("details[data-group='www'] input[name='port_range.0']", "80").await;
        p.fill("details[data-group='www'] input[name='source.0']", "0.0.0.0/0").await;
        p.click("button[data-rules-save='www']").await;
        p.wait_for("the saved rule", TextPred("details[data-group='www'] summary", "1 rules".into())).await;

        // An SSH key and a floating IP, attached to vm1.
        p.fill("#key-name", "laptop").await;
        p.fill("#key-public", KEY).await;
        p.click("#key-submit").await;
        p.wait_for("the key", ExistsPred("tr[data-key='laptop']")).await;
        p.fill("#fip-name", "pub1").await;
        p.click("#fip-submit").await;
        p.wait_for("the floating IP", ExistsPred("tr[data-fip='pub1']")).await;
        p.click("button[data-fip-attach='pub1']").await;
        p.wait_for("the attached floating IP", ExistsPred("button[data-fip-detach='pub1']")).await;
        p.shots("40-network").await;

        // The instance page shows the public address.
        p.goto("/projects/demo/instances/vm1").await;
        p.wait_for("the public IP", TextPred("#public-ip", "203.0.113.".into())).await;

        // A new instance in the new VPC, with the group and the key, from the create form.
        p.goto("/projects/demo/instances/new").await;
        p.fill("#name", "vm2").await;
        p.eval(
            "document.getElementById('vpc').value = 'app'; \
             document.querySelector('#security_groups option[value=\"www\"]').selected = true; \
             document.querySelector('#ssh_keys option[value=\"laptop\"]').selected = true; return true;",
        )
        .await;
        p.shots("41-create-form-network").await;
        p.click("#create-submit").await;
        p.wait_for("the instance page", PathPred("/projects/demo/instances/vm2".into())).await;
        p.wait_for("the interface in app", TextPred("#interfaces", "10.10.1.".into())).await;

        // A second floating IP: attach to vm2, detach (confirm), release (confirm).
        p.goto("/projects/demo/network").await;
        p.fill("#fip-name", "pub2").await;
        p.click("#fip-submit").await;
        p.wait_for("the second floating IP", ExistsPred("tr[data-fip='pub2']")).await;
        p.eval("document.querySelector('select[data-fip-instance=\"pub2\"]').value = 'vm2'; return true;").await;
        p.click("button[data-fip-attach='pub2']").await;
        p.wait_for("pub2 attached", ExistsPred("button[data-fip-detach='pub2']")).await;
        p.click("button[data-fip-detach='pub2']").await;
        c.accept_alert().await.expect("confirm the detach");
        p.wait_for("pub2 detached", ExistsPred("button[data-fip-attach='pub2']")).await;
        p.click("tr[data-fip='pub2'] button.danger").await;
        c.accept_alert().await.expect("confirm the release");
        let deadline = Instant::now() + WAIT;
        while c.find(Locator::Css("tr[data-fip='pub2']")).await.is_ok() {
            assert!(Instant::now() < deadline, "the released floating IP is still listed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        c.close().await.expect("close the browser");
    });
    let k = &cloud.k;
    let (s, v) = k.get("/v1/vpc-subnets/web?project=demo&vpc=app");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ipv4_cidr"], "10.10.1.0/24", "{v}");
    let (s, v) = k.get("/v1/security-groups/www/rules?project=demo");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["rules"],
        json!([{"direction": "ingress", "protocol": "tcp", "port_range": "80", "source": "0.0.0.0/0"}]),
        "{v}"
    );
    let (s, v) = k.get("/v1/ssh-keys/laptop?project=demo");
    assert_eq!((s, v["public_key"].as_str()), (200, Some(KEY)), "{v}");
    let (s, v) = k.get("/v1/floating-ips/pub1?project=demo");
    assert_eq!((s, v["instance"].as_str()), (200, Some("vm1")), "{v}");
    let (s, v) = k.get("/v1/floating-ips/pub2?project=demo");
    assert_eq!(s, 404, "pub2 was released: {v}");
    let (s, v) = k.get("/v1/instances/vm2?project=demo");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["network_interfaces"][0]["vpc"], "app", "{v}");
    assert_eq!(v["network_interfaces"][0]["subnet"], "web", "{v}");
}

/// Logs `user` in through the login form and waits for the project picker.
async fn login_as(p: &Page<'_>, user: &str, password: &str) {
    p.goto("/login").await;
    p.fill("#username", user).await;
    p.fill("#password", password).await;
    p.click("#login-submit").await;
    p.wait_for(&format!("the project picker for {user}"), PathPred("/projects".into())).await;
}

/// Waits until nothing matches `css` (a deleted row).
async fn wait_gone(p: &Page<'_>, css: &str) {
    let deadline = Instant::now() + WAIT;
    while p.c.find(Locator::Css(css)).await.is_ok() {
        assert!(Instant::now() < deadline, "{css} is still on the page:\n{}", p.body_text().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The attribute `name` of the element `css` (empty when absent).
async fn attr_of(p: &Page<'_>, css: &str, name: &str) -> String {
    let e = p.c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("find {css}: {e}"));
    e.attr(name).await.ok().flatten().unwrap_or_default()
}

struct AttrPred(String, &'static str, String);
impl AsyncPred for AttrPred {
    async fn check(&mut self, c: &Client) -> bool {
        match c.find(Locator::Css(&self.0)).await {
            Ok(e) => e.attr(self.1).await.ok().flatten().as_deref() == Some(self.2.as_str()),
            Err(_) => false,
        }
    }
}

/// Deterministic file contents of `len` bytes (every byte value occurs).
fn file_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Downloads `href` in the page (the session cookie is sent) and gives the status, the
/// Content-Type and Content-Disposition, and the body in hex.
async fn download(p: &Page<'_>, href: &str) -> (Value, String, String, String) {
    let v = p
        .eval(&format!(
            "return fetch({href}, {{credentials: 'same-origin'}}).then(r => r.arrayBuffer().then(b => [r.status, \
             r.headers.get('content-type'), r.headers.get('content-disposition'), \
             Array.from(new Uint8Array(b), x => x.toString(16).padStart(2, '0')).join('')]));",
            href = json!(href)
        ))
        .await;
    let s = |i: usize| v[i].as_str().unwrap_or_default().to_string();
    (v[0].clone(), s(1), s(2), s(3))
}

/// An anonymous S3 GET of `bucket/key` at kumod's S3 endpoint: status and body.
fn s3_anonymous_get(k: &Kumod, path: &str) -> (u16, Vec<u8>) {
    let addr = std::fs::read_to_string(k.data_dir().join("s3.addr")).expect("DATA_DIR/s3.addr");
    let r = k.http.get(format!("http://{}/{path}", addr.trim())).send().expect("S3 GET");
    let status = r.status().as_u16();
    (status, r.bytes().map(|b| b.to_vec()).unwrap_or_default())
}

#[test]
fn tenant_manages_buckets_and_objects_in_the_browser() {
    if !browser_available("tenant_manages_buckets_and_objects_in_the_browser") {
        return;
    }
    let cloud = cloud(0);
    let k = &cloud.k;
    // A steep object storage price, so a few seconds of one bucket cost something.
    let (s, v) = k.send_put("/v1/system/prices", json!({"kind": "object_storage", "unit_price": "100000.00"}));
    assert!(s == 200 || s == 201, "{v}");
    let (s, v) = k.post("/v1/users", json!({"name": "victor", "password": "viewer horse"}));
    assert_eq!(s, 201, "{v}");
    let (s, v) = k.post("/v1/projects/demo/members", json!({"user": "victor", "role": "viewer"}));
    assert!(s == 200 || s == 201, "{v}");
    // Another project's bucket: its name is taken, and alice must not reach it.
    let (s, v) = k.post("/v1/buckets?project=other", json!({"name": "their-bucket"}));
    assert_eq!(s, 201, "{v}");

    // Files to upload: names with a space, '+' and a non-ASCII letter; sizes that take a few
    // progress events.
    let files = tempfile::tempdir().expect("tempdir");
    let text_name = "hello world+1 ü.txt";
    let text = file_bytes(300 << 10, 7);
    let bin = file_bytes(700 << 10, 3);
    std::fs::write(files.path().join(text_name), &text).expect("write file");
    std::fs::write(files.path().join("data.bin"), &bin).expect("write file");
    std::fs::write(files.path().join("extra.txt"), b"one too many").expect("write file");
    let both = format!("{}\n{}", files.path().join(text_name).display(), files.path().join("data.bin").display());
    let text_key = format!("docs/{text_name}");
    let text_row = format!("tr[data-key='{text_key}']");

    let driver = Driver::start();
    let base = k.url.clone();
    run(async {
        let c = driver.browser().await;
        let p = Page { c: &c, base: &base, shots: screenshot_dir() };
        login_alice(&p).await;
        p.goto("/projects/demo/instances").await;
        p.click("header nav a[href='/projects/demo/buckets']").await;
        p.wait_for("the buckets page", PathPred("/projects/demo/buckets".into())).await;
        p.wait_for("the empty state", TextPred("#buckets", "No buckets yet".into())).await;
        p.shots("50-buckets-empty").await;

        // The S3 name rule is checked in the browser; the API's message for a taken name.
        p.fill("#bucket-name", "My_Bucket").await;
        let valid = p.eval("return document.getElementById('bucket-name').checkValidity();").await;
        assert_eq!(valid, json!(false), "the name field accepted 'My_Bucket'");
        p.fill("#bucket-name", "their-bucket").await;
        p.click("#bucket-submit").await;
        p.wait_for("the taken-name error", TextPred("#bucket-form-error", "is taken".into())).await;
        p.fill("#bucket-name", "photos-1").await;
        p.click("#bucket-submit").await;
        p.wait_for("the new bucket", ExistsPred("tr[data-name='photos-1']")).await;

        // Open it: empty, then upload two files into a sub-folder through the real file input.
        p.click("tr[data-name='photos-1'] a").await;
        p.wait_for("the bucket page", PathPred("/projects/demo/buckets/photos-1".into())).await;
        p.wait_for("the empty bucket", TextPred("#objects", "This bucket is empty".into())).await;
        p.fill("#upload-folder", "docs").await;
        let input = c.find(Locator::Css("#upload-files")).await.expect("file input");
        input.send_keys(&both).await.expect("choose the files");
        p.eval(SET_MARKER).await;
        p.click("#upload-submit").await;
        p.wait_for("the finished upload", TextPred("#upload-status", "Uploaded 2 files.".into())).await;
        assert_eq!(p.eval("return document.getElementById('upload-bar').value;").await, json!(100));
        p.wait_for("the docs folder", ExistsPred("tr[data-folder='docs/'] a")).await;
        assert_eq!(p.eval(GET_MARKER).await, json!("still here"), "the page was reloaded by the upload");
        p.shots("51-bucket-uploaded").await;

        // Browse into the folder: the breadcrumb, both objects with their sizes.
        p.click("tr[data-folder='docs/'] a").await;
        p.wait_for("the docs folder page", TextPred("#breadcrumb", "docs".into())).await;
        assert_eq!(attr_of(&p, &format!("{text_row} td[data-size]"), "data-size").await, text.len().to_string());
        assert_eq!(attr_of(&p, "tr[data-key='docs/data.bin'] td[data-size]", "data-size").await, bin.len().to_string());
        p.shots("52-bucket-folder").await;

        // Pages: one entry per page, then the next.
        let url = p.c.current_url().await.expect("url");
        p.goto(&format!("{}?{}&limit=1", url.path(), url.query().unwrap_or_default())).await;
        p.wait_for("a one-entry page", ExistsPred("#next-page")).await;
        assert!(c.find(Locator::Css(&text_row)).await.is_err(), "the first page holds one key");
        p.click("#next-page").await;
        p.wait_for("the second page", TextPred("#objects", text_name.into())).await;
        assert!(c.find(Locator::Css("tr[data-key='docs/data.bin']")).await.is_err(), "the second page repeats");
        p.goto(&format!("{}?{}", url.path(), url.query().unwrap_or_default())).await;

        // Download: the stored bytes, the type the browser gave, the exact file name.
        let href = attr_of(&p, &format!("{text_row} a[data-action='download']"), "href").await;
        let (status, ctype, disposition, body) = download(&p, &href).await;
        assert_eq!(status, json!(200), "{href}");
        assert_eq!(ctype, "text/plain");
        assert!(
            disposition.starts_with("attachment;")
                && disposition.contains("filename*=UTF-8''hello%20world%2B1%20%C3%BC.txt"),
            "{disposition}"
        );
        assert!(body == hex(&text), "the downloaded bytes differ from the uploaded file");

        // The quota is the S3 endpoint's: a third object over a limit of two shows its message.
        let (s, v) = tokio::task::block_in_place(|| k.send_put("/v1/projects/demo/quotas", json!({"objects": 2})));
        assert_eq!(s, 200, "{v}");
        let input = c.find(Locator::Css("#upload-files")).await.expect("file input");
        input.send_keys(&files.path().join("extra.txt").to_string_lossy()).await.expect("choose the file");
        p.click("#upload-submit").await;
        p.wait_for("the quota error", TextPred("#upload-error", "objects 2 of 2 used".into())).await;
        assert!(c.find(Locator::Css("tr[data-key='docs/extra.txt']")).await.is_err(), "the refused object is listed");

        // Public read: off, so an anonymous S3 GET is refused; switched on by an owner (with a
        // confirmation), the same GET gives the bytes, and the API says so.
        let s3_path = "photos-1/docs/hello%20world%2B1%20%C3%BC.txt";
        let (s, _) = tokio::task::block_in_place(|| s3_anonymous_get(k, s3_path));
        assert_eq!(s, 403, "a private bucket was readable anonymously");
        p.goto("/projects/demo/buckets").await;
        let switch = "tr[data-name='photos-1'] button[data-action='public-read']";
        p.wait_for("the switch off", AttrPred(switch.into(), "aria-checked", "false".into())).await;
        // Only owners change a bucket's ACL (the API's rule): alice, a collaborator, is told so.
        p.click(switch).await;
        c.accept_alert().await.expect("confirm public read");
        p.wait_for("the collaborator's refusal", TextPred("#bucket-error", "does not allow this".into())).await;
        assert_eq!(attr_of(&p, switch, "aria-checked").await, "false");
        let (s, v) = tokio::task::block_in_place(|| {
            k.post("/v1/projects/demo/members", json!({"user": "alice", "role": "owner"}))
        });
        assert!(s == 200 || s == 201, "{v}");
        p.click(switch).await;
        c.accept_alert().await.expect("confirm public read");
        p.wait_for("the switch on", AttrPred(switch.into(), "aria-checked", "true".into())).await;
        let (s, v) = tokio::task::block_in_place(|| k.get("/v1/buckets/photos-1?project=demo"));
        assert_eq!((s, v["public_read"].as_bool()), (200, Some(true)), "{v}");
        let (s, got) = tokio::task::block_in_place(|| s3_anonymous_get(k, s3_path));
        assert_eq!(s, 200);
        assert!(got == text, "the S3 endpoint serves other bytes than were uploaded");

        // The list: objects, size, and what the bucket cost so far this month.
        let cell = |what: &str| format!("tr[data-name='photos-1'] td[data-{what}]");
        assert_eq!(attr_of(&p, &cell("objects"), "data-objects").await, "2");
        assert_eq!(attr_of(&p, &cell("bytes"), "data-bytes").await, (text.len() + bin.len()).to_string());
        let cents: i64 = attr_of(&p, &cell("cost"), "data-cost").await.parse().unwrap_or(0);
        assert!(cents > 0, "no month-to-date cost for the bucket:\n{}", p.body_text().await);
        p.shots("53-buckets-list").await;

        // A non-empty bucket cannot be deleted: the API's message, inline.
        p.click("tr[data-name='photos-1'] button[data-action='delete']").await;
        c.accept_alert().await.expect("confirm the delete");
        p.wait_for("the not-empty error", TextPred("#bucket-error", "is not empty".into())).await;
        p.shots("54-bucket-not-empty").await;

        // Other projects' buckets are 404, even through this project's pages.
        for path in [
            "/projects/other/buckets",
            "/projects/other/buckets/their-bucket",
            "/projects/demo/buckets/their-bucket",
            "/projects/demo/buckets/their-bucket/download?key=x",
            "/projects/demo/buckets/photos-1/download?key=docs%2Fmissing",
        ] {
            let status = p.eval(&format!("return fetch('{path}').then(r => r.status);")).await;
            assert_eq!(status, json!(404), "{path}");
        }
        // Every state-changing route refuses a POST without the CSRF token.
        for path in [
            "/projects/demo/buckets",
            "/projects/demo/buckets/photos-1/public-read",
            "/projects/demo/buckets/photos-1/delete",
            "/projects/demo/buckets/photos-1/delete-object",
            "/projects/demo/buckets/photos-1/upload?key=x",
        ] {
            assert_eq!(post_status(&p, path).await, json!(403), "{path}");
        }

        // A viewer browses and downloads but cannot upload: the API's message.
        p.click("header .who button").await;
        p.wait_for("the login page", PathPred("/login".into())).await;
        login_as(&p, "victor", "viewer horse").await;
        p.goto("/projects/demo/buckets/photos-1?prefix=docs%2F").await;
        p.wait_for("the viewer's listing", ExistsPred("tr[data-key='docs/data.bin']")).await;
        let (status, _, _, _) = download(&p, &href).await;
        assert_eq!(status, json!(200), "a viewer could not download");
        let input = c.find(Locator::Css("#upload-files")).await.expect("file input");
        input.send_keys(&files.path().join("data.bin").to_string_lossy()).await.expect("choose the file");
        p.fill("#upload-folder", "viewer").await;
        p.click("#upload-submit").await;
        p.wait_for("the viewer's refusal", TextPred("#upload-error", "does not allow this".into())).await;
        p.shots("55-bucket-viewer-refused").await;
        p.click("header .who button").await;
        p.wait_for("the login page", PathPred("/login".into())).await;
        login_alice(&p).await;

        // Delete both objects (confirmations); the folder empties, then the bucket goes.
        p.goto("/projects/demo/buckets/photos-1?prefix=docs%2F").await;
        for row in [text_row.as_str(), "tr[data-key='docs/data.bin']"] {
            p.click(&format!("{row} button[data-action='delete']")).await;
            c.accept_alert().await.expect("confirm the object delete");
            wait_gone(&p, row).await;
        }
        p.wait_for("the empty folder", TextPred("#objects", "Nothing under docs/".into())).await;
        p.goto("/projects/demo/buckets").await;
        p.click("tr[data-name='photos-1'] button[data-action='delete']").await;
        c.accept_alert().await.expect("confirm the delete");
        wait_gone(&p, "tr[data-name='photos-1']").await;
        p.wait_for("the empty state again", TextPred("#buckets", "No buckets yet".into())).await;
        c.close().await.expect("close the browser");
    });
    let (s, v) = k.get("/v1/buckets/photos-1?project=demo");
    assert_eq!(s, 404, "the deleted bucket is still there: {v}");
    // The viewer's refused upload stored nothing; the objects' puts and deletes are audited
    // as alice's.
    let (s, v) = k.get("/v1/events?project=demo&limit=1000");
    assert_eq!(s, 200, "{v}");
    let events: Vec<(String, String)> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource_type"] == "object")
        .map(|e| (e["kind"].as_str().unwrap_or("").to_string(), e["cause"].as_str().unwrap_or("").to_string()))
        .collect();
    let puts = events.iter().filter(|(kind, cause)| kind == "put" && cause.contains("alice")).count();
    let deletes = events.iter().filter(|(kind, cause)| kind == "deleted" && cause.contains("alice")).count();
    assert_eq!((puts, deletes, events.len()), (2, 2, 4), "{events:?}");
}

/// Benchmark (not a timed test): how long kumod takes to serve the instances page and its live
/// fragment with 1,000 (sim) instances in the project. Prints the figures for docs/dashboard.md.
/// `cargo test --release -p kumod --test dashboard -- --ignored --nocapture instances_page_render_time`
#[test]
#[ignore]
fn instances_page_render_time_with_1000_instances() {
    let images = fixture_image_cache();
    let cache = images.path().to_string_lossy().into_owned();
    let k = Kumod::start(&[
        "--driver",
        "sim",
        "--image-cache",
        &cache,
        "--host-vcpus",
        "4000",
        "--host-memory-mib",
        "1000000",
        "--host-disk-gib",
        "100000",
    ]);
    k.create_project("bench");
    let started = Instant::now();
    for n in 0..1000 {
        let (s, v) = k.post(
            "/v1/instances?project=bench",
            json!({"name": format!("vm-{n:04}"), "image": IMAGE, "instance_type": "k1-nano"}),
        );
        assert_eq!(s, 202, "{v}");
    }
    eprintln!("created 1000 sim instances in {:.1} s", started.elapsed().as_secs_f64());
    let cookie = format!("kumo_session=t.{}", k.token);
    let measure = |path: &str| {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..30 {
            let t = Instant::now();
            let resp = k.http.get(format!("{}{path}", k.url)).header("cookie", &cookie).send().expect("GET");
            assert_eq!(resp.status().as_u16(), 200, "{path}");
            let body = resp.text().expect("body");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(body.matches("data-name=\"vm-").count(), 1000, "{path} lists every instance");
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "GET {path}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms over 30 requests; {} KiB of HTML",
            times[15],
            times[27],
            times[0],
            size / 1024
        );
    };
    measure("/projects/bench/instances");
    measure("/projects/bench/instances/rows");
    let t = Instant::now();
    let (s, _) = k.get("/v1/instances?project=bench&limit=1000");
    assert_eq!(s, 200);
    eprintln!("for comparison, GET /v1/instances?limit=1000 (JSON): {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
}

/// Benchmark (not a timed test): how long kumod takes to serve the volumes and network pages of
/// a busy project: 200 volumes, 50 security groups of 20 rules each (the network page reads each
/// group's rules), 20 VPCs with 2 subnets each, 50 SSH keys. Prints the figures for
/// docs/benchmarks.md.
/// `cargo test -p kumod --test dashboard -- --ignored --nocapture volumes_and_network_pages_render_time`
#[test]
#[ignore]
fn volumes_and_network_pages_render_time() {
    let images = fixture_image_cache();
    let cache = images.path().to_string_lossy().into_owned();
    let k = Kumod::start(&["--driver", "sim", "--image-cache", &cache, "--host-disk-gib", "100000"]);
    k.create_project("bench");
    for n in 0..200 {
        let (s, v) = k.post("/v1/volumes?project=bench", json!({"name": format!("vol-{n:03}"), "size_gib": 1}));
        assert_eq!(s, 202, "{v}");
    }
    let rules: Vec<Value> = (0..20)
        .map(|i| json!({"direction": "ingress", "protocol": "tcp", "port_range": format!("{}", 1000 + i), "source": "10.0.0.0/8"}))
        .collect();
    for n in 0..50 {
        let (s, v) = k.post("/v1/security-groups?project=bench", json!({"name": format!("sg-{n:02}")}));
        assert_eq!(s, 201, "{v}");
        let (s, v) = k.send_put(&format!("/v1/security-groups/sg-{n:02}/rules?project=bench"), json!({"rules": rules}));
        assert_eq!(s, 200, "{v}");
    }
    for n in 0..20 {
        let (s, v) = k.post(
            "/v1/vpcs?project=bench",
            json!({"name": format!("vpc-{n:02}"), "ipv4_cidr": format!("10.{n}.0.0/16")}),
        );
        assert_eq!(s, 201, "{v}");
        for m in 0..2 {
            let (s, v) = k.post(
                &format!("/v1/vpc-subnets?project=bench&vpc=vpc-{n:02}"),
                json!({"name": format!("sn-{m}"), "ipv4_cidr": format!("10.{n}.{m}.0/24")}),
            );
            assert_eq!(s, 201, "{v}");
        }
    }
    for n in 0..50 {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f me@laptop";
        let (s, v) = k.post("/v1/ssh-keys?project=bench", json!({"name": format!("key-{n:02}"), "public_key": key}));
        assert_eq!(s, 201, "{v}");
    }
    let cookie = format!("kumo_session=t.{}", k.token);
    let measure = |path: &str, marker: &str, want: usize| {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..30 {
            let t = Instant::now();
            let resp = k.http.get(format!("{}{path}", k.url)).header("cookie", &cookie).send().expect("GET");
            assert_eq!(resp.status().as_u16(), 200, "{path}");
            let body = resp.text().expect("body");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(body.matches(marker).count(), want, "{path}");
            size = body.len();
        }
        times.sort_by(f64::total_cmp);
        eprintln!(
            "GET {path}: median {:.1} ms, p90 {:.1} ms, min {:.1} ms over 30 requests; {} KiB of HTML",
            times[15],
            times[27],
            times[0],
            size / 1024
        );
    };
    measure("/projects/bench/volumes", "<tr data-name=\"vol-", 200);
    measure("/projects/bench/volumes/rows", "<tr data-name=\"vol-", 200);
    measure("/projects/bench/network", "data-group=\"sg-", 50);
}
