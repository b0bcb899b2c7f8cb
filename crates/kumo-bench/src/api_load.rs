//! API throughput: GET view and GET list against a `--driver sim` kumod holding 100 instances,
//! with N keep-alive HTTP/1.1 connections for S seconds, and the same load against a trivial
//! HTTP server (axum, like kumod) that answers the very bytes kumod answered. The trivial server
//! runs as a separate process, as kumod does, so both are measured the same way; its figure is
//! the ceiling of HTTP on this machine with this load generator.
//!
//! The load generator runs in this process and shares the machine's cores with the server under
//! test: every figure here is "server + load generator on the same cores".

use crate::kumod::{Kumod, PROJECT};
use crate::procs;
use anyhow::{bail, Context, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, AUTHORIZATION, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const INSTANCES: usize = 100;
const WARMUP: Duration = Duration::from_secs(1);

/// One load run's outcome.
#[derive(Debug, Clone, Default)]
pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    pub secs: f64,
    pub p50_us: u32,
    pub p99_us: u32,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }
}

struct Window {
    measuring: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct ConnTally {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// `connections` keep-alive connections each sending `GET path` back to back; counts the
/// responses completed in a `seconds` window after a one-second warm-up.
pub async fn run_load(
    addr: SocketAddr,
    path: &str,
    token: &str,
    connections: usize,
    seconds: f64,
) -> Result<LoadResult> {
    let window = Arc::new(Window { measuring: AtomicBool::new(false), stop: AtomicBool::new(false) });
    let auth = HeaderValue::from_str(&format!("Bearer {token}"))?;
    let host = HeaderValue::from_str(&addr.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (window, path, auth, host) = (window.clone(), path.to_string(), auth.clone(), host.clone());
        tasks.spawn(async move { connection(addr, &path, auth, host, &window).await });
    }
    tokio::time::sleep(WARMUP).await;
    window.measuring.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    window.measuring.store(false, Ordering::SeqCst);
    let secs = t0.elapsed().as_secs_f64();
    window.stop.store(true, Ordering::SeqCst);
    let mut total = ConnTally::default();
    while let Some(r) = tasks.join_next().await {
        let t = r??;
        total.ok += t.ok;
        total.errors += t.errors;
        total.latencies_us.extend(t.latencies_us);
    }
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> u32 {
        let v = &total.latencies_us;
        if v.is_empty() {
            return 0;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    };
    Ok(LoadResult { ok: total.ok, errors: total.errors, secs, p50_us: pct(0.50), p99_us: pct(0.99) })
}

async fn connection(
    addr: SocketAddr,
    path: &str,
    auth: HeaderValue,
    host: HeaderValue,
    w: &Window,
) -> Result<ConnTally> {
    let mut tally = ConnTally::default();
    'connect: while !w.stop.load(Ordering::Relaxed) {
        let stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        while !w.stop.load(Ordering::Relaxed) {
            let req = Request::get(path)
                .header(HOST, host.clone())
                .header(AUTHORIZATION, auth.clone())
                .body(Empty::<Bytes>::new())?;
            let t = Instant::now();
            let outcome = match sender.send_request(req).await {
                Ok(resp) => {
                    let ok = resp.status().is_success();
                    match resp.into_body().collect().await {
                        Ok(_) => Some(ok),
                        Err(_) => None,
                    }
                }
                Err(_) => None,
            };
            let measuring = w.measuring.load(Ordering::Relaxed);
            match outcome {
                Some(true) if measuring => {
                    tally.ok += 1;
                    tally.latencies_us.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
                Some(true) => {}
                Some(false) => tally.errors += u64::from(measuring),
                None => {
                    // The connection broke: count it and open a new one.
                    tally.errors += u64::from(measuring);
                    continue 'connect;
                }
            }
        }
    }
    Ok(tally)
}

/// The trivial HTTP server, run as `kumo-bench serve-static` (a hidden subcommand).
pub fn serve_static(view: &Path, list: &Path, addr_file: &Path) -> Result<()> {
    let view = Bytes::from(std::fs::read(view)?);
    let list = Bytes::from(std::fs::read(list)?);
    // Same runtime shape as kumod: a multi-threaded runtime with one worker per core.
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let json = |b: Bytes| ([(hyper::header::CONTENT_TYPE, "application/json")], b);
        let app = axum::Router::new()
            .route("/v1/instances", axum::routing::get(move || std::future::ready(json(list.clone()))))
            .route("/v1/instances/{name}", axum::routing::get(move || std::future::ready(json(view.clone()))));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let tmp = addr_file.with_extension("tmp");
        std::fs::write(&tmp, listener.local_addr()?.to_string())?;
        std::fs::rename(&tmp, addr_file)?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The trivial server's process; killed on drop.
struct StaticServer {
    child: Child,
    addr: SocketAddr,
}

impl StaticServer {
    async fn start(dir: &Path, view: &[u8], list: &[u8]) -> Result<StaticServer> {
        std::fs::create_dir_all(dir)?;
        let (view_file, list_file, addr_file) = (dir.join("view.json"), dir.join("list.json"), dir.join("addr"));
        std::fs::write(&view_file, view)?;
        std::fs::write(&list_file, list)?;
        let log = dir.join("server.log");
        let out = std::fs::File::create(&log)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("serve-static")
            .args([&view_file, &list_file, &addr_file])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut server = StaticServer { child, addr: "127.0.0.1:0".parse()? };
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(a) = std::fs::read_to_string(&addr_file) {
                server.addr = a.trim().parse()?;
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("the static HTTP server exited ({status}): {}", procs::tail(&log, 2000));
            }
            if Instant::now() >= until {
                bail!("the static HTTP server did not start within 20 s: {}", procs::tail(&log, 2000));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Part 3's figures.
pub struct ApiFigures {
    pub connections: usize,
    pub seconds: f64,
    pub view_bytes: usize,
    pub list_bytes: usize,
    pub view_kumod: LoadResult,
    pub view_static: LoadResult,
    pub list_kumod: LoadResult,
    pub list_static: LoadResult,
    /// The sim kumod's VmRSS after the load, with its 100 instances.
    pub sim_kumod_rss_kib: Option<u64>,
}

pub async fn api_throughput(root: &Path, connections: usize, seconds: f64) -> Result<ApiFigures> {
    let kumod = start_sim(&root.join("s"), &[]).await?;
    api_throughput_on(&kumod, root, connections, seconds).await
}

/// A sim kumod in `data_dir` (plus `extra` flags, e.g. `--database`), with room for any number of
/// instances.
pub async fn start_sim(data_dir: &Path, extra: &[String]) -> Result<Kumod> {
    let big = |v: u64| v.to_string();
    let mut flags = vec![
        "--driver".into(),
        "sim".into(),
        // Room for the 100 instances whatever this machine's size: the sim driver runs nothing.
        "--host-vcpus".into(),
        big(4096),
        "--host-memory-mib".into(),
        big(16 << 20),
        "--host-disk-gib".into(),
        big(1 << 20),
    ];
    flags.extend(extra.iter().cloned());
    Kumod::start(data_dir, &flags).await
}

/// Part 3 against a running sim kumod: creates the project and its 100 instances, then runs
/// the load (the static server's files go under `root`).
pub async fn api_throughput_on(kumod: &Kumod, root: &Path, connections: usize, seconds: f64) -> Result<ApiFigures> {
    kumod.api.create_project(PROJECT).await?;
    let names: Vec<String> = (0..INSTANCES).map(|i| format!("vm-{i:03}")).collect();
    for chunk in names.chunks(10) {
        let mut set = tokio::task::JoinSet::new();
        for name in chunk {
            let (api, name) = (kumod.api.clone(), name.clone());
            set.spawn(async move { api.create_instance(&name).await });
        }
        while let Some(r) = set.join_next().await {
            r??;
        }
    }
    let list_path = format!("/v1/instances?project={PROJECT}");
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let list = kumod.api.get(&list_path).await?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let running = items.iter().filter(|i| i["state"] == "running").count();
        if running == INSTANCES {
            break;
        }
        if Instant::now() >= until {
            bail!("only {running} of {INSTANCES} sim instances running after 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let view_path = format!("/v1/instances/{}?project={PROJECT}", names[INSTANCES / 2]);
    let view_body = kumod.api.get_bytes(&view_path).await?;
    let list_body = kumod.api.get_bytes(&list_path).await?;
    let server = StaticServer::start(&root.join("static"), &view_body, &list_body).await?;
    let kumod_addr: SocketAddr = kumod.api.base.trim_start_matches("http://").parse()?;
    let token = kumod.api.token.clone();

    let load = |addr: SocketAddr, path: String, what: &'static str| {
        let token = token.clone();
        async move {
            let r = run_load(addr, &path, &token, connections, seconds).await?;
            eprintln!("  {what}: {:.0} req/s ({} errors)", r.rate(), r.errors);
            Ok::<LoadResult, anyhow::Error>(r)
        }
    };
    // Interleaved, so that anything else happening on the machine hits both alike.
    let view_kumod = load(kumod_addr, view_path.clone(), "GET view, kumod").await?;
    let view_static = load(server.addr, view_path.clone(), "GET view, static server").await?;
    let list_kumod = load(kumod_addr, list_path.clone(), "GET list, kumod").await?;
    let list_static = load(server.addr, list_path.clone(), "GET list, static server").await?;
    Ok(ApiFigures {
        connections,
        seconds,
        view_bytes: view_body.len(),
        list_bytes: list_body.len(),
        view_kumod,
        view_static,
        list_kumod,
        list_static,
        sim_kumod_rss_kib: procs::vm_rss_kib(kumod.pid),
    })
}

/// The hidden subcommand's arguments: the view body, the list body, the file to write the address to.
pub fn static_args(args: &[PathBuf]) -> Result<(&Path, &Path, &Path)> {
    match args {
        [v, l, a] => Ok((v, l, a)),
        _ => bail!("serve-static takes VIEW_FILE LIST_FILE ADDR_FILE"),
    }
}
