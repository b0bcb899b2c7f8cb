//! Object storage (issue 14): PUT and GET through kumod's S3 endpoint with a parallel client
//! (boto3, [`CLIENTS`]), each next to the raw limit measured in the same run on the same
//! filesystem with the same durability policy as kumo-objects' `LocalDir`.
//!
//! Cases: one 64 MiB and one 1 GiB object (multipart PUT of [`PART`] parts, [`CONCURRENCY`] at a
//! time; GET as ranged GETs of [`PART`], [`CONCURRENCY`] at a time), and [`SMALL_COUNT`] objects
//! of [`SMALL_SIZE`] by a pool of [`THREADS`] threads.
//!
//! The raw limit does what the endpoint's data path does with the same bytes and nothing else:
//! every part (or small object) is written to `tmp/ID` in 1 MiB writes, `fsync`ed, renamed to
//! `blobs/XY/ID` and the directory `fsync`ed, with the same parallelism; GET reads the files back
//! in 1 MiB reads. Both sides read right after writing, so both GETs are served from the page
//! cache (as the endpoint's GET of a fresh object is; caches are not dropped).

use crate::api_load;
use crate::kumod::{Kumod, PROJECT};
use crate::procs;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use uuid::Uuid;

/// The venv with boto3 (scripts/s3-clients.sh makes it).
pub const CLIENTS: &str = "/var/cache/kumo/s3-clients";
const MIB: u64 = 1 << 20;
/// Part size of multipart uploads and of ranged GETs.
pub const PART: u64 = 16 * MIB;
/// Parts (or ranges) in flight for one large object.
pub const CONCURRENCY: usize = 8;
pub const SMALL_COUNT: usize = 1000;
pub const SMALL_SIZE: usize = 4096;
/// Client threads for the small objects.
pub const THREADS: usize = 16;
/// Size of the writes and reads of the raw side (kumo-objects' CHUNK).
const CHUNK: usize = 1 << 20;
const BUCKET: &str = "bench";
const SCRIPT: &str = include_str!("s3_client.py");
const PASSWORD: &str = "kumo-bench s3 password";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Put,
    Get,
}

/// One case's runs: seconds per run on each side, and CPU seconds (kumod's, the client's) of the
/// kumo side.
#[derive(Debug, Clone)]
pub struct Case {
    pub op: Op,
    /// Bytes of one object; [`Case::objects`] of them per run.
    pub size: u64,
    pub objects: usize,
    pub kumo_secs: Vec<f64>,
    pub raw_secs: Vec<f64>,
    pub kumod_cpu: Vec<f64>,
    pub client_cpu: Vec<f64>,
}

impl Case {
    fn new(op: Op, size: u64, objects: usize) -> Case {
        Case { op, size, objects, kumo_secs: vec![], raw_secs: vec![], kumod_cpu: vec![], client_cpu: vec![] }
    }

    pub fn large(&self) -> bool {
        self.objects == 1
    }

    /// MB/s (10^6 bytes) of each run, or objects/s for the small objects.
    pub fn rates(&self, secs: &[f64]) -> Vec<f64> {
        secs.iter().map(|s| if self.large() { self.size as f64 / 1e6 / s } else { self.objects as f64 / s }).collect()
    }
}

pub struct Figures {
    pub runs: usize,
    pub cases: Vec<Case>,
}

struct ClientOut {
    secs: f64,
    cpu: f64,
}

/// The kumo side: kumod, its endpoint and an access key of a project owner.
struct Endpoint {
    kumod: Kumod,
    endpoint: String,
    key: (String, String),
    python: PathBuf,
    script: PathBuf,
}

impl Endpoint {
    /// Runs one operation of the client; its own timing of the transfers, kumod's CPU around it.
    async fn client(&self, args: &[String]) -> Result<(ClientOut, f64)> {
        let before = procs::cpu_secs(self.kumod.pid).unwrap_or(f64::NAN);
        let out = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .env("S3_ENDPOINT", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", &self.key.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.key.1)
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("run {}", self.python.display()))?;
        let kumod_cpu = procs::cpu_secs(self.kumod.pid).unwrap_or(f64::NAN) - before;
        if !out.status.success() {
            bail!(
                "s3 client {args:?} failed ({}):\n{}{}\n--- kumod log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                procs::tail(&self.kumod.log, 3000)
            );
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
            .with_context(|| format!("s3 client {args:?}: not JSON: {stdout}"))?;
        let f = |k: &str| v[k].as_f64().with_context(|| format!("s3 client {args:?}: no {k} in {v}"));
        Ok((ClientOut { secs: f("secs")?, cpu: f("cpu")? }, kumod_cpu))
    }
}

/// Starts a sim kumod with its S3 endpoint, makes a user who owns the project and an access key
/// of theirs (the operator has no user, so cannot), and the bucket.
async fn endpoint(root: &Path) -> Result<Endpoint> {
    let python = Path::new(CLIENTS).join("bin/python");
    if !python.exists() {
        bail!("{} not found: make the S3 clients' venv with scripts/s3-clients.sh", python.display());
    }
    let script = root.join("s3_client.py");
    std::fs::write(&script, SCRIPT)?;
    eprintln!("starting kumod (sim driver, S3 endpoint) in {}", root.join("s3").display());
    let kumod = api_load::start_sim(&root.join("s3"), &[]).await?;
    let api = &kumod.api;
    api.create_project(PROJECT).await?;
    api.post("/v1/users", json!({"name": "bench", "password": PASSWORD})).await?;
    api.post(&format!("/v1/projects/{PROJECT}/members"), json!({"user": "bench", "role": "owner"})).await?;
    let login = api.post("/v1/login", json!({"username": "bench", "password": PASSWORD})).await?;
    let mut user = api.clone();
    user.token = login["token"].as_str().context("login: no token")?.to_string();
    let k = user.post(&format!("/v1/access-keys?project={PROJECT}"), json!({"name": "bench"})).await?;
    let field = |f: &str| k[f].as_str().map(String::from).with_context(|| format!("access key: no {f} in {k}"));
    let key = (field("access_key_id")?, field("secret_access_key")?);
    let addr = std::fs::read_to_string(kumod.data_dir.join("s3.addr")).context("read DATA_DIR/s3.addr")?;
    let e = Endpoint { endpoint: format!("http://{}", addr.trim()), kumod, key, python, script };
    e.client(&["mb".into(), BUCKET.into()]).await?;
    Ok(e)
}

/// A file of `size` pseudo-random bytes (incompressible, cheap to make), fsynced.
fn source_file(path: &Path, size: u64) -> Result<()> {
    let mut f = File::create(path)?;
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ size;
    let mut buf = vec![0u8; CHUNK];
    let mut left = size;
    while left > 0 {
        for w in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// What `LocalDir::write` does around the bytes: `tmp/ID`, fill, fsync, rename to `blobs/XY/ID`,
/// fsync the directory.
fn write_blob(dir: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<PathBuf> {
    // The ids kumod gives blobs (kumo_store::new_id), so the files spread over directories alike.
    let id = Uuid::now_v7();
    let tmp = dir.join("tmp").join(id.to_string());
    let mut f = File::create(&tmp)?;
    fill(&mut f)?;
    f.sync_all()?;
    drop(f);
    let d = dir.join("blobs").join(&id.simple().to_string()[..2]);
    std::fs::create_dir_all(&d)?;
    let path = d.join(id.to_string());
    std::fs::rename(&tmp, &path)?;
    File::open(&d)?.sync_all()?;
    Ok(path)
}

/// Runs `job(i)` for i in 0..n on `workers` threads, each taking the next i; the wall time.
fn parallel<T: Send>(n: usize, workers: usize, job: impl Fn(usize) -> Result<T> + Sync) -> Result<(f64, Vec<T>)> {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    let results: Vec<Result<Vec<T>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.min(n).max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(out);
                        }
                        out.push(job(i)?);
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a raw worker panicked")))).collect()
    });
    let secs = t.elapsed().as_secs_f64();
    let mut all = Vec::new();
    for r in results {
        all.extend(r?);
    }
    Ok((secs, all))
}

/// Raw PUT of a large object: its parts from `source`, [`CONCURRENCY`] at a time.
fn raw_put_large(dir: &Path, source: &Path, size: u64) -> Result<(f64, Vec<PathBuf>)> {
    let src = File::open(source)?;
    let parts = size.div_ceil(PART) as usize;
    parallel(parts, CONCURRENCY, |i| {
        let start = i as u64 * PART;
        let end = (start + PART).min(size);
        write_blob(dir, |f| {
            let mut buf = vec![0u8; CHUNK];
            let mut off = start;
            while off < end {
                let n = (end - off).min(CHUNK as u64) as usize;
                src.read_exact_at(&mut buf[..n], off)?;
                f.write_all(&buf[..n])?;
                off += n as u64;
            }
            Ok(())
        })
    })
}

/// Raw GET: the files read in 1 MiB reads, `workers` at a time; the bytes read.
fn raw_read(files: &[PathBuf], workers: usize) -> Result<(f64, u64)> {
    let (secs, sizes) = parallel(files.len(), workers, |i| {
        let mut f = File::open(&files[i])?;
        let mut buf = vec![0u8; CHUNK];
        let mut n = 0u64;
        loop {
            match f.read(&mut buf)? {
                0 => return Ok(n),
                k => n += k as u64,
            }
        }
    })?;
    Ok((secs, sizes.iter().sum()))
}

fn raw_put_small(dir: &Path) -> Result<(f64, Vec<PathBuf>)> {
    parallel(SMALL_COUNT, THREADS, |i| {
        let mut body = vec![0u8; SMALL_SIZE];
        body[..8].copy_from_slice(&(i as u64).to_le_bytes());
        write_blob(dir, |f| f.write_all(&body))
    })
}

fn remove(files: &[PathBuf]) {
    for f in files {
        let _ = std::fs::remove_file(f);
    }
}

fn sync() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await?
}

/// `runs` rounds of every case; in each round and case kumo's PUT, GET, then the raw PUT, GET
/// (the other way round every second round).
pub async fn run(root: &Path, runs: usize) -> Result<Figures> {
    let e = endpoint(root).await?;
    let raw = root.join("raw");
    std::fs::create_dir_all(raw.join("tmp"))?;
    std::fs::create_dir_all(raw.join("blobs"))?;
    let sizes = [64 * MIB, 1024 * MIB];
    let mut sources = Vec::new();
    for size in sizes {
        let p = root.join(format!("source-{}m", size / MIB));
        let p2 = p.clone();
        blocking(move || source_file(&p2, size)).await?;
        sources.push(p);
    }
    let mut cases = Vec::new();
    for size in sizes {
        cases.push(Case::new(Op::Put, size, 1));
        cases.push(Case::new(Op::Get, size, 1));
    }
    cases.push(Case::new(Op::Put, SMALL_SIZE as u64, SMALL_COUNT));
    cases.push(Case::new(Op::Get, SMALL_SIZE as u64, SMALL_COUNT));
    let s = |v: usize| v.to_string();

    for round in 0..runs {
        for (c, size) in sizes.iter().enumerate() {
            let size = *size;
            let key = format!("large-{}m-{round}", size / MIB);
            eprintln!("s3 round {}/{runs}: {} MiB object", round + 1, size / MIB);
            let kumo = async {
                sync();
                let src = sources[c].to_string_lossy().into_owned();
                let put = ["put-large".into(), BUCKET.into(), key.clone(), src, s(PART as usize), s(CONCURRENCY)];
                let (p, pc) = e.client(&put).await?;
                let get = [
                    "get-large".into(),
                    BUCKET.into(),
                    key.clone(),
                    size.to_string(),
                    s(PART as usize),
                    s(CONCURRENCY),
                ];
                let (g, gc) = e.client(&get).await?;
                anyhow::Ok([(p, pc), (g, gc)])
            };
            let raw_side = || {
                let (raw, src) = (raw.clone(), sources[c].clone());
                blocking(move || {
                    sync();
                    let (put, files) = raw_put_large(&raw, &src, size)?;
                    let (get, n) = raw_read(&files, CONCURRENCY)?;
                    remove(&files);
                    if n != size {
                        bail!("raw GET read {n} bytes of {size}");
                    }
                    Ok([put, get])
                })
            };
            let (k, r) = if round % 2 == 0 {
                let k = kumo.await?;
                (k, raw_side().await?)
            } else {
                let r = raw_side().await?;
                (kumo.await?, r)
            };
            for (i, ((out, kcpu), raw_secs)) in k.into_iter().zip(r).enumerate() {
                let case = &mut cases[2 * c + i];
                case.kumo_secs.push(out.secs);
                case.client_cpu.push(out.cpu);
                case.kumod_cpu.push(kcpu);
                case.raw_secs.push(raw_secs);
            }
        }

        eprintln!("s3 round {}/{runs}: {SMALL_COUNT} × {SMALL_SIZE} B objects", round + 1);
        let prefix = format!("small-{round}");
        let args = |op: &str| [op.into(), BUCKET.into(), prefix.clone(), s(SMALL_COUNT), s(SMALL_SIZE), s(THREADS)];
        let kumo = async {
            sync();
            let p = e.client(&args("put-small")).await?;
            let g = e.client(&args("get-small")).await?;
            anyhow::Ok([p, g])
        };
        let raw_side = || {
            let raw = raw.clone();
            blocking(move || {
                sync();
                let (put, files) = raw_put_small(&raw)?;
                let (get, n) = raw_read(&files, THREADS)?;
                remove(&files);
                if n != (SMALL_COUNT * SMALL_SIZE) as u64 {
                    bail!("raw small GETs read {n} bytes");
                }
                Ok([put, get])
            })
        };
        let (k, r) = if round % 2 == 0 {
            let k = kumo.await?;
            (k, raw_side().await?)
        } else {
            let r = raw_side().await?;
            (kumo.await?, r)
        };
        let base = 2 * sizes.len();
        for (i, ((out, kcpu), raw_secs)) in k.into_iter().zip(r).enumerate() {
            let case = &mut cases[base + i];
            case.kumo_secs.push(out.secs);
            case.client_cpu.push(out.cpu);
            case.kumod_cpu.push(kcpu);
            case.raw_secs.push(raw_secs);
        }
    }
    drop(e);
    Ok(Figures { runs, cases })
}
