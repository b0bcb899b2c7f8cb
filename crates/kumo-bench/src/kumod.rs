//! A `kumod` of the benchmark's own (the release binary next to `kumo-bench`, in a fresh data
//! directory, on a free port) and a small client for the few API calls the benchmark makes.
//!
//! [`Kumod`] is a guard: dropping it stops kumod and kills every process left under its data
//! directory, so an error or Ctrl-C anywhere in a benchmark leaves nothing running.

use crate::procs;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The image every benchmark boots, and where kumod (and the raw baseline) take it from.
pub const IMAGE: &str = "tiny";
pub const IMAGE_CACHE: &str = "/var/cache/kumo/images";
/// The plan of every benchmark instance: 1 vCPU, 128 MiB, 1 GiB.
pub const INSTANCE_TYPE: &str = "k1-nano";
pub const PROJECT: &str = "bench";

const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The `kumod` binary shipped next to this executable.
pub fn binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?.with_file_name("kumod");
    if !exe.exists() {
        bail!("{} not found; build it with `cargo build --release -p kumod -p kumo-bench`", exe.display());
    }
    Ok(exe)
}

/// A running kumod (see the module docs).
pub struct Kumod {
    child: Option<Child>,
    pub pid: i32,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub api: Api,
}

impl Kumod {
    /// Starts kumod with `--data-dir data_dir` plus `flags` and waits until its API answers; its
    /// public images come from [`IMAGE_CACHE`].
    pub async fn start(data_dir: &Path, flags: &[String]) -> Result<Kumod> {
        Kumod::start_with_images(data_dir, Path::new(IMAGE_CACHE), flags).await
    }

    /// [`Kumod::start`] with the public images of `image_cache`.
    pub async fn start_with_images(data_dir: &Path, image_cache: &Path, flags: &[String]) -> Result<Kumod> {
        Kumod::spawn(None, data_dir, image_cache, flags).await
    }

    /// A `kumod controller` (flags: `--database`, TLS, …) on `data_dir`. Its API is HTTPS with a
    /// self-signed certificate: the client pins the certificate of `tls_dir` (the first
    /// controller's `DATA_DIR/tls`, which the others are given with --tls-cert/--tls-key), and
    /// the operator token is `admin_token`'s (the first controller's, made with the database).
    pub async fn start_controller(
        data_dir: &Path,
        flags: &[String],
        tls_dir: &Path,
        admin_token: &Path,
    ) -> Result<Kumod> {
        Kumod::spawn(Some((tls_dir, admin_token)), data_dir, Path::new(IMAGE_CACHE), flags).await
    }

    async fn spawn(
        controller: Option<(&Path, &Path)>,
        data_dir: &Path,
        image_cache: &Path,
        flags: &[String],
    ) -> Result<Kumod> {
        let exe = binary()?;
        std::fs::create_dir_all(data_dir)?;
        let log = data_dir.with_extension("log");
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&exe);
        if controller.is_some() {
            cmd.arg("controller");
        }
        cmd.arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0", "--host-name", "bench", "--image-cache"])
            .arg(image_cache)
            .args(flags)
            // Reproducible: the defaults of kumod, not whatever the caller's environment says.
            .env_remove("RUST_LOG")
            .env_remove("KUMOD_DATABASE")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group: a Ctrl-C in the terminal reaches only the benchmark, which then
            // tears down in order (kumod's QEMUs are not stopped by kumod's own shutdown).
            .process_group(0);
        let child = cmd.spawn().with_context(|| format!("start {}", exe.display()))?;
        let pid = child.id() as i32;
        let mut kumod = Kumod {
            child: Some(child),
            pid,
            data_dir: data_dir.to_path_buf(),
            log,
            api: Api::new("http://unset".into(), String::new()),
        };
        let addr_file = data_dir.join("kumod.addr");
        let until = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Some(child) = kumod.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!("kumod exited at start ({status}):\n{}", procs::tail(&kumod.log, 3000));
                }
            }
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                if !a.trim().is_empty() {
                    break a.trim().to_string();
                }
            }
            if Instant::now() >= until {
                bail!(
                    "kumod did not write {} within {:?}:\n{}",
                    addr_file.display(),
                    START_TIMEOUT,
                    procs::tail(&kumod.log, 3000)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        kumod.api = match controller {
            None => {
                let token = std::fs::read_to_string(data_dir.join("admin-token")).context("read the admin token")?;
                Api::new(format!("http://{addr}"), token.trim().to_string())
            }
            Some((tls_dir, admin_token)) => {
                let token = std::fs::read_to_string(admin_token).context("read the admin token")?;
                let fingerprint =
                    std::fs::read_to_string(tls_dir.join("fingerprint")).context("read the fingerprint")?;
                let tls = kumo_host_rpc::tls::pinned_client_config(fingerprint.trim(), None)?;
                let http = reqwest::Client::builder()
                    .use_preconfigured_tls(tls)
                    .timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build()?;
                Api::with_client(format!("https://{addr}"), token.trim().to_string(), http)
            }
        };
        kumod.api.get("/v1/hosts").await.context("kumod's API does not answer")?;
        Ok(kumod)
    }

    /// The first (only) host's view: driver, accelerator and why.
    pub async fn host(&self) -> Result<Value> {
        let hosts = self.api.get("/v1/hosts").await?;
        hosts["items"].get(0).cloned().context("kumod lists no host")
    }

    /// Pid of the QEMU that runs an instance, from its pidfile.
    pub fn qemu_pid(&self, instance_id: &str) -> Option<i32> {
        let p = self.data_dir.join("instances").join(instance_id).join("qemu.pid");
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    /// Stops kumod (SIGTERM, SIGKILL after 10 s) and kills whatever is still running under its data
    /// directory. Returns what had to be killed besides kumod: after every instance was deleted
    /// through the API that list should be empty.
    pub fn stop(&mut self) -> Vec<String> {
        if let Some(mut child) = self.child.take() {
            procs::signal(self.pid, libc::SIGTERM);
            let until = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                eprintln!("warning: kumod (pid {}) did not stop within 10 s of SIGTERM; killing it", self.pid);
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        procs::kill_everything_under(&self.data_dir)
    }
}

impl Drop for Kumod {
    fn drop(&mut self) {
        let left = self.stop();
        if !left.is_empty() {
            eprintln!("cleanup: killed {} process(es) left under {}", left.len(), self.data_dir.display());
        }
    }
}

/// The API calls the benchmark makes, with the operator token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    /// Fields every [`Api::create_instance`] adds to its body (e.g. the VPC and subnet).
    pub create_extra: serde_json::Map<String, Value>,
    http: reqwest::Client,
}

impl Api {
    fn new(base: String, token: String) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap_or_default();
        Api::with_client(base, token, http)
    }

    fn with_client(base: String, token: String, http: reqwest::Client) -> Api {
        Api { base, token, create_extra: serde_json::Map::new(), http }
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Result<reqwest::Response> {
        let resp = req.bearer_auth(&self.token).send().await.with_context(|| what.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            bail!("{what}: HTTP {status}: {body}");
        }
        Ok(resp)
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base)), &format!("GET {path}")).await?;
        Ok(resp.json().await?)
    }

    /// The exact bytes of a response body.
    pub async fn get_bytes(&self, path: &str) -> Result<Vec<u8>> {
        let resp = self.send(self.http.get(format!("{}{path}", self.base)), &format!("GET {path}")).await?;
        Ok(resp.bytes().await?.to_vec())
    }

    /// GET that tells "not found" apart: `Ok(None)` on 404.
    pub async fn get_opt(&self, path: &str) -> Result<Option<Value>> {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            bail!("GET {path}: HTTP {}: {}", resp.status(), resp.text().await.unwrap_or_default());
        }
        Ok(Some(resp.json().await?))
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let resp =
            self.send(self.http.post(format!("{}{path}", self.base)).json(&body), &format!("POST {path}")).await?;
        Ok(resp.json().await?)
    }

    pub async fn put(&self, path: &str, body: Value) -> Result<Value> {
        let resp = self.send(self.http.put(format!("{}{path}", self.base)).json(&body), &format!("PUT {path}")).await?;
        Ok(resp.json().await?)
    }

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(self.http.delete(format!("{}{path}", self.base)), &format!("DELETE {path}")).await?;
        Ok(())
    }

    pub async fn create_project(&self, name: &str) -> Result<()> {
        self.post("/v1/projects", json!({ "name": name })).await.map(|_| ())
    }

    /// Creates a k1-nano instance of the tiny image (plus [`Api::create_extra`]); returns its id.
    pub async fn create_instance(&self, name: &str) -> Result<String> {
        let mut body = json!({ "name": name, "image": IMAGE, "instance_type": INSTANCE_TYPE });
        if let Some(b) = body.as_object_mut() {
            b.extend(self.create_extra.clone());
        }
        let view = self.post(&format!("/v1/instances?project={PROJECT}"), body).await?;
        view["id"].as_str().map(String::from).context("the created instance has no id")
    }

    pub async fn instance(&self, name: &str) -> Result<Option<Value>> {
        self.get_opt(&format!("/v1/instances/{name}?project={PROJECT}")).await
    }

    /// Serial console bytes from `offset`, and the offset to continue from.
    pub async fn serial(&self, name: &str, offset: u64) -> Result<(Vec<u8>, u64)> {
        let path = format!("/v1/instances/{name}/serial-console?project={PROJECT}&offset={offset}");
        let resp = self.send(self.http.get(format!("{}{path}", self.base)), &format!("GET {path}")).await?;
        let next =
            resp.headers().get("kumo-serial-next-offset").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?.to_vec();
        let next = next.unwrap_or(offset + bytes.len() as u64);
        Ok((bytes, next))
    }

    /// Deletes an instance and waits until it is gone (404 or `destroyed`).
    pub async fn delete_instance_and_wait(&self, name: &str, timeout: Duration) -> Result<()> {
        self.delete(&format!("/v1/instances/{name}?project={PROJECT}")).await?;
        let until = Instant::now() + timeout;
        loop {
            match self.instance(name).await? {
                None => return Ok(()),
                Some(v) if v["state"] == "destroyed" => return Ok(()),
                Some(v) if Instant::now() >= until => {
                    bail!("instance {name} still in state {} {:?}s after DELETE", v["state"], timeout.as_secs())
                }
                Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}
