//! [`RemoteAgent`]: a host's agent reached over HTTPS, as a [`HostAgent`] (every
//! [`Transport`] is one; see `kumo_host_api::wire`). It pins the agent's certificate by its
//! SHA-256 fingerprint and sends the bearer secret. See the crate docs for the protocol.
//!
//! [`HostAgent`]: kumo_host_api::HostAgent

use crate::{tls, CALL_PATH, DISK_PATH, HEALTH_PATH};
use anyhow::{bail, Context};
use async_trait::async_trait;
use kumo_host_api::wire::{Call, Reply, Transport};
use kumo_host_api::{HostError, InstanceId};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use std::time::Duration;

/// How long one call may take by default: stop, detach and backups wait on guests and disks.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long opening a connection may take: a host that does not answer by then is down.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A host agent's API at `base` (see [`RemoteAgent::new`]).
pub struct RemoteAgent {
    http: reqwest::Client,
    base: String,
    call_url: String,
    health_url: String,
    authorization: HeaderValue,
    call_timeout: Duration,
}

impl RemoteAgent {
    /// `base`: e.g. "https://10.77.0.2:7401"; `fingerprint`: the SHA-256 of the agent's
    /// certificate ("AB:CD:…", or any form [`tls::parse_fingerprint`] reads); `secret`: the
    /// bearer secret the agent was given. Connects lazily (the first call).
    pub fn new(base: &str, fingerprint: &str, secret: &str) -> anyhow::Result<RemoteAgent> {
        let url = reqwest::Url::parse(base).with_context(|| format!("the host agent's address '{base}'"))?;
        if url.scheme() != "https" || url.host().is_none() || url.path() != "/" || url.query().is_some() {
            bail!("the host agent's address '{base}' must be https://HOST:PORT");
        }
        if secret.is_empty() {
            bail!("the host agent's secret is empty");
        }
        let tls = tls::pinned_client_config(fingerprint, None).context("the host agent's fingerprint")?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .context("an HTTPS client for the host agent")?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {secret}"))
            .context("the host agent's secret is not a header value")?;
        authorization.set_sensitive(true);
        let base = base.trim_end_matches('/').to_string();
        Ok(RemoteAgent {
            http,
            call_url: format!("{base}{CALL_PATH}"),
            health_url: format!("{base}{HEALTH_PATH}"),
            base,
            authorization,
            call_timeout: CALL_TIMEOUT,
        })
    }

    /// The longest one call may take (default [`CALL_TIMEOUT`]).
    pub fn with_call_timeout(mut self, timeout: Duration) -> RemoteAgent {
        self.call_timeout = timeout;
        self
    }

    /// The agent's address, as given (without a trailing `/`).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether the agent serves and takes our secret (`GET /agent/v1/health`).
    pub async fn health(&self) -> Result<(), HostError> {
        let request = self.http.get(&self.health_url).timeout(CONNECT_TIMEOUT * 2);
        self.exchange("health", request).await.map(drop)
    }

    /// Sends `request` with the secret; the answer's body when it is 200.
    async fn exchange(&self, name: &str, request: reqwest::RequestBuilder) -> Result<Vec<u8>, HostError> {
        let unreachable = |e: reqwest::Error| HostError::Unreachable(format!("{name}: {}", self.describe(&e)));
        let response = request.header(AUTHORIZATION, self.authorization.clone()).send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        // A host's error of a disk transfer keeps its kind (see the crate docs).
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            if let Ok(Reply::Err(e)) = serde_json::from_slice::<Reply<()>>(&body) {
                return Err(e);
            }
        }
        let text = String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned();
        let what = match status {
            reqwest::StatusCode::UNAUTHORIZED => "refused our secret",
            reqwest::StatusCode::BAD_REQUEST => "could not read the call (a controller newer than the agent?)",
            _ => "failed",
        };
        Err(HostError::Unreachable(format!("{name}: the host agent at {} {what} ({status}): {text}", self.base)))
    }

    /// A transport failure, worded for a person.
    fn describe(&self, e: &reqwest::Error) -> String {
        let base = &self.base;
        if let Some(tls) = tls::tls_failure(e) {
            return format!("TLS with the host agent at {base} failed: {tls}");
        }
        let chain = causes(e);
        if e.is_connect() {
            format!("cannot connect to the host agent at {base}: {chain}")
        } else if e.is_timeout() {
            format!("no answer from the host agent at {base} within {:?}: {chain}", self.call_timeout)
        } else {
            format!("the host agent at {base}: {chain}")
        }
    }
}

#[async_trait]
impl Transport for RemoteAgent {
    async fn send(&self, call: &Call) -> Result<Vec<u8>, HostError> {
        let request = self.http.post(&self.call_url).timeout(self.call_timeout).json(call);
        self.exchange(call.name(), request).await
    }

    async fn read_chunk(&self, id: InstanceId, offset: u64, max: u64) -> Result<Vec<u8>, HostError> {
        let url = format!("{}{DISK_PATH}/{id}/export?offset={offset}&max={max}", self.base);
        self.exchange("read_export", self.http.get(url).timeout(self.call_timeout)).await
    }

    async fn write_chunk(&self, id: InstanceId, offset: u64, bytes: Vec<u8>) -> Result<(), HostError> {
        let url = format!("{}{DISK_PATH}/{id}/import?offset={offset}", self.base);
        let request = self.http.put(url).timeout(self.call_timeout).body(bytes);
        self.exchange("write_import", request).await.map(drop)
    }
}

/// An error and its causes, `a: b: c` (reqwest's own text names none of them).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}
