//! A fleet of simulated hosts in this process, for `kumo-bench cluster`: thousands of sim-driver
//! agents that speak the agents' real protocol to real `kumod controller`s.
//!
//! What is real, per host: its join (a one-time join token made through the API, presented once
//! on `POST /agent/v1/join`; the host id and credential it gets), its heartbeats (`POST
//! /agent/v1/heartbeat` with its credential, over TLS pinned to the controllers' certificate,
//! every [`HEARTBEAT`] like `kumod agent`), and the host-agent API the controllers call (a
//! [`kumo_agent::LocalAgent`] on the sim driver, the very agent `kumod agent --driver sim` runs,
//! behind [`kumo_host_rpc::server`], with its own secret).
//!
//! What is simulated: every host is served by **one** HTTPS listener with **one** certificate
//! ([`kumo_host_rpc::server::router_by_secret`] picks the host by the secret the controller
//! presents), so all hosts advertise the same address and fingerprint; the heartbeats of all
//! hosts share one pool of keep-alive connections (a real host has its own connection); host `i`
//! heartbeats to controller `i mod M` first (a real agent starts with the first it is given; an
//! operator spreads them, or puts a load balancer in front), the others when it fails, and never
//! fences (no guest runs). The sim driver keeps guests in memory: no process, no disk.

use crate::kumod::Api;
use anyhow::{bail, Context, Result};
use kumo_agent::compute::sim::SimDriver;
use kumo_agent::LocalAgent;
use kumo_host_api::membership::{Heartbeat, JoinRequest, JoinResponse};
use kumo_host_api::{HostAgent, HostInfo};
use kumo_types::HostId;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often each host renews its lease: `kumod agent`'s interval.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// Capacity of every simulated host: [vCPUs, MiB of memory, GiB of disk, GPUs].
pub const CAPACITY: [i64; 4] = [32, 131_072, 2_000, 0];
/// Heartbeats in flight at once, at most (a real fleet has one per host; the pool is shared).
const IN_FLIGHT: usize = 512;

/// One simulated host.
pub struct SimHost {
    pub name: String,
    pub zone: String,
    info: HostInfo,
    /// The secret controllers present to it.
    secret: String,
    joined: OnceLock<(HostId, String)>,
    /// Its heartbeats are not sent (as if its agent were killed).
    pub silent: AtomicBool,
    /// When its last heartbeat was acknowledged.
    pub last_ack: Mutex<Option<Instant>>,
}

impl SimHost {
    pub fn id(&self) -> Option<HostId> {
        self.joined.get().map(|(id, _)| *id)
    }
}

/// Heartbeat counters since the fleet started.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
    /// Microseconds from sending to the acknowledgement, summed (with `acked`: the mean).
    pub latency_us: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

pub struct Fleet {
    pub hosts: Vec<Arc<SimHost>>,
    /// The one address every host advertises, and its certificate's fingerprint.
    address: String,
    fingerprint: String,
    controllers: Vec<String>,
    http: reqwest::Client,
    /// No host heartbeats while set.
    pub paused: AtomicBool,
    pub counters: Counters,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Fleet {
    /// `n` hosts over `zones` (host `i` in zone `i mod zones`), served on one loopback listener;
    /// `controllers` are the controllers' URLs, `controller_fingerprint` their certificate's.
    pub async fn start(
        dir: &Path,
        n: usize,
        zones: &[String],
        controllers: Vec<String>,
        controller_fingerprint: &str,
    ) -> Result<Arc<Fleet>> {
        let quarantine = Arc::new(kumo_agent::storage::quarantine::Quarantine::new(dir.join("quarantine")));
        let mut hosts = Vec::with_capacity(n);
        let mut by_secret: HashMap<String, Arc<dyn HostAgent>> = HashMap::with_capacity(n);
        for i in 0..n {
            let name = format!("sim-{i:05}");
            let driver = Arc::new(SimDriver::new(name.clone(), CAPACITY, Duration::ZERO));
            let agent: Arc<dyn HostAgent> = Arc::new(LocalAgent::new(driver, &dir.join(&name), quarantine.clone()));
            let info = agent.host_info().await?;
            let secret = kumo_host_rpc::server::new_secret();
            // Keyed by the secret's hash: the lookup's time tells nothing about a secret.
            by_secret.insert(kumo_control::context::hash_token(&secret), agent);
            hosts.push(Arc::new(SimHost {
                zone: zones[i % zones.len()].clone(),
                name,
                info,
                secret,
                joined: OnceLock::new(),
                silent: AtomicBool::new(false),
                last_ack: Mutex::new(None),
            }));
        }
        let by_secret = Arc::new(by_secret);
        let router = kumo_host_rpc::server::router_by_secret(Arc::new(move |given: &str| {
            by_secret.get(&kumo_control::context::hash_token(given)).cloned()
        }));
        let cert = kumo_host_rpc::tls::self_signed(&["127.0.0.1".to_string()])?;
        let tls = kumo_host_rpc::tls::server_config(&cert)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = format!("https://{}", listener.local_addr()?);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            if let Err(e) = kumo_host_rpc::server::serve_tls(listener, router, tls, shutdown).await {
                eprintln!("fleet: serving the hosts' API failed: {e:#}");
            }
        });
        let client_tls = kumo_host_rpc::tls::pinned_client_config(controller_fingerprint, None)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(client_tls)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()?;
        Ok(Arc::new(Fleet {
            hosts,
            address,
            fingerprint: cert.fingerprint,
            controllers,
            http,
            paused: AtomicBool::new(false),
            counters: Counters::default(),
            stop,
        }))
    }

    /// POSTs to controller `first` (index), then the others in turn when it fails (a transport
    /// error or 5xx; a 4xx is final), as `kumod agent` does.
    async fn post<B: serde::Serialize, R: serde::de::DeserializeOwned>(
        &self,
        first: usize,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> Result<R> {
        let mut last = None;
        for k in 0..self.controllers.len() {
            let base = &self.controllers[(first + k) % self.controllers.len()];
            let mut req = self.http.post(format!("{base}{path}")).json(body);
            match bearer {
                Some(b) => req = req.bearer_auth(b),
                // A join that timed out may have spent its token: it is not tried again, so it
                // may take as long as a busy controller needs.
                None => req = req.timeout(Duration::from_secs(120)),
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r.json().await?),
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    bail!("{base}{path} refused ({status}): {}", r.text().await.unwrap_or_default())
                }
                Ok(r) => last = Some(anyhow::anyhow!("{base}{path}: {}", r.status())),
                Err(e) => last = Some(anyhow::anyhow!("{base}{path}: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no controller")))
    }

    /// Joins every host: a join token for its zone made through `api` (the operator's), then the
    /// join, `concurrency` hosts at a time, alternating between the controllers.
    pub async fn join_all(self: &Arc<Self>, api: &Api, concurrency: usize) -> Result<()> {
        let next = Arc::new(AtomicU64::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (fleet, api, next) = (self.clone(), api.clone(), next.clone());
            workers.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(h) = fleet.hosts.get(i) else { return Ok::<(), anyhow::Error>(()) };
                    let token = api.post("/v1/join-tokens", serde_json::json!({ "zone": h.zone })).await?;
                    let token = token["token"].as_str().context("join token")?.to_string();
                    let req = JoinRequest {
                        token,
                        zone: Some(h.zone.clone()),
                        info: h.info.clone(),
                        address: fleet.address.clone(),
                        fingerprint: fleet.fingerprint.clone(),
                        agent_secret: h.secret.clone(),
                    };
                    let joined: JoinResponse = fleet
                        .post(i % fleet.controllers.len(), "/agent/v1/join", None, &req)
                        .await
                        .with_context(|| format!("host {} joining", h.name))?;
                    *h.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                    let _ = h.joined.set((joined.host_id, joined.credential));
                }
            });
        }
        while let Some(r) = workers.join_next().await {
            r??;
        }
        Ok(())
    }

    /// Starts the heartbeats: every host once per [`HEARTBEAT`], spread evenly over it.
    pub fn heartbeat(self: &Arc<Self>) {
        let fleet = self.clone();
        let mut stopped = self.stop.subscribe();
        tokio::spawn(async move {
            let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
            let n = fleet.hosts.len().max(1);
            let start = Instant::now();
            let mut due: u64 = 0;
            let mut tick = crate::ticker(Duration::from_millis(10));
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.wait_for(|s| *s) => return,
                }
                // Heartbeats due by now since the start, host after host.
                let until = (start.elapsed().as_secs_f64() / HEARTBEAT.as_secs_f64() * n as f64) as u64;
                while due < until {
                    let i = (due % n as u64) as usize;
                    due += 1;
                    let h = fleet.hosts[i].clone();
                    if fleet.paused.load(Ordering::Relaxed) || h.silent.load(Ordering::Relaxed) {
                        continue;
                    }
                    let Some((id, credential)) = h.joined.get().cloned() else { continue };
                    let Ok(permit) = permits.clone().acquire_owned().await else { return };
                    let fleet = fleet.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        fleet.beat(i, &h, id, &credential).await;
                    });
                }
            }
        });
    }

    async fn beat(&self, i: usize, h: &SimHost, id: HostId, credential: &str) {
        let hb = Heartbeat {
            host_id: id,
            info: h.info.clone(),
            address: self.address.clone(),
            fingerprint: self.fingerprint.clone(),
        };
        let c = &self.counters;
        c.sent.fetch_add(1, Ordering::Relaxed);
        let t = Instant::now();
        let r: Result<serde_json::Value> =
            self.post(i % self.controllers.len(), "/agent/v1/heartbeat", Some(credential), &hb).await;
        match r {
            Ok(_) => {
                c.acked.fetch_add(1, Ordering::Relaxed);
                c.latency_us.fetch_add(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                *h.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                *c.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{}: {e:#}", h.name));
            }
        }
    }

    /// (acknowledged, failed, mean latency in ms) since the start.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let c = &self.counters;
        (c.acked.load(Ordering::Relaxed), c.failed.load(Ordering::Relaxed), c.latency_us.load(Ordering::Relaxed))
    }

    /// Stops the heartbeats and the hosts' API.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.stop();
    }
}
