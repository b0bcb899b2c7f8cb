//! Kumo's object storage endpoint: an S3-compatible service that the aws CLI, boto3, rclone and
//! s3cmd use unchanged (issue 14).
//!
//! The S3 protocol is [`s3s`]'s: routing of path-style and virtual-host-style requests, the XML
//! bodies, SigV4 (header and presigned query) with `aws-chunked` streaming bodies and their
//! trailers, and the S3 error document. This crate supplies what is Kumo's:
//!
//! - [`auth`]: who signed a request. Secrets are the project access keys of
//!   [`kumo_control::app::access_keys`]; every request reads the key again, so a deleted key or a
//!   changed role applies to the next request.
//! - [`service::KumoS3`]: the operations. Each one names the bucket it acts on and the access it
//!   needs ([`service::KumoS3::bucket`]); that check is the REST API's (`OpContext::authorize_project`
//!   with the key's user's role in the key's project), so a viewer's key reads and cannot write.
//!   Anonymous callers read the objects of `public-read` buckets and nothing else, and are told
//!   `AccessDenied` for every other bucket, existing or not.
//! - object metadata in the store ([`kumo_store::objects`]), committed only after the object's
//!   bytes are durable in the data backend ([`kumo_objects`]); the orphan sweep
//!   ([`kumo_control::background::sweep`]) removes blobs no row names.

pub mod auth;
mod checksums;
pub mod console;
mod lifecycle;
mod listing;
mod multipart;
pub mod service;
mod versions;

use kumo_control::App;
use std::sync::Arc;

/// The S3 service of `app`, answering virtual-host-style requests for `BUCKET.DOMAIN` for each of
/// `domains` (path-style requests are answered on any host name).
pub fn service(app: Arc<App>, domains: &[String]) -> anyhow::Result<s3s::service::S3Service> {
    let mut b = s3s::service::S3ServiceBuilder::new(service::KumoS3::new(app.clone()));
    b.set_auth(auth::AccessKeys(app.clone()));
    b.set_access(auth::AllowAnonymous);
    if !domains.is_empty() {
        b.set_host(Domains::new(domains)?);
    }
    Ok(b.build())
}

/// Virtual-host-style addressing: `BUCKET.DOMAIN[:PORT]` names a bucket; any other host name
/// (the domain itself, an IP address, `localhost`) is path-style.
struct Domains(Vec<String>);

impl Domains {
    fn new(domains: &[String]) -> anyhow::Result<Domains> {
        let mut out = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            let ok = !d.is_empty()
                && d.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
            anyhow::ensure!(ok, "--s3-domain '{d}' is not a domain name (like s3.example.com)");
            out.push(d);
        }
        Ok(Domains(out))
    }
}

impl s3s::host::S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        for d in &self.0 {
            if name.len() > d.len() + 1
                && name.ends_with(d.as_str())
                && name.as_bytes()[name.len() - d.len() - 1] == b'.'
            {
                let bucket = name[..name.len() - d.len() - 1].to_ascii_lowercase();
                return Ok(s3s::host::VirtualHost::new(d.as_str()).with_bucket(bucket));
            }
        }
        Ok(s3s::host::VirtualHost::new(name))
    }
}

/// Serves `svc` (see [`service`]) on `listener` until the process ends.
pub async fn serve(svc: s3s::service::S3Service, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    let svc = axum::error_handling::HandleError::new(svc, |e: s3s::HttpError| async move {
        tracing::error!(error = ?e, "s3: request failed");
        axum::http::StatusCode::INTERNAL_SERVER_ERROR
    });
    let router = axum::Router::new().fallback_service(svc);
    // No Nagle: a GET's head and body go in two writes, and the body would wait for the client's
    // delayed ACK of the head (~40 ms per small GET, measured by kumo-bench s3).
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}
