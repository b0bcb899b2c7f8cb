//! HTTPS for kumod: the TLS flags, the certificate (given PEM files, or a self-signed one made at
//! first start into `DATA_DIR/tls/` and reused afterwards), its SHA-256 fingerprint, and serving
//! the API + dashboard over TLS. The certificate machinery (self-signed certificates,
//! fingerprints, the rustls configuration, serving over TLS) is shared with the host agent's API:
//! `kumo_host_rpc::tls` and `kumo_host_rpc::server::serve_tls`.
//!
//! Policy: on a loopback address kumod serves plain HTTP unless asked for TLS (same machine: a
//! TLS-terminating proxy, the test harness). On any other address it serves TLS — with a
//! self-signed certificate when no `--tls-cert` is given — and plain HTTP only with
//! `--insecure-http`, which warns loudly: tokens must never cross a network in clear text.

use anyhow::{bail, Context};
use axum::extract::Request;
use axum::http::uri::{Authority, Scheme};
use axum::http::{header, Uri};
use axum::middleware::Next;
use axum::response::Response;
use kumo_control::App;
use kumo_host_rpc::tls::{fingerprint, load_or_make, private_dir, server_config, server_config_for, write_atomic};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS flags of `kumod` (flattened at the end of its run arguments).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first).
    #[arg(long, env = "KUMOD_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "KUMOD_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate made at first start in DATA_DIR/tls/ and reused
    /// afterwards (the default on a non-loopback address when --tls-cert is not given).
    #[arg(long, env = "KUMOD_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_self_signed: bool,
    /// Extra name or IP address for the self-signed certificate (repeatable); it always holds the
    /// listen address, localhost, 127.0.0.1, ::1 and the machine's hostname.
    #[arg(long, env = "KUMOD_TLS_SAN", value_name = "NAME", value_delimiter = ',', conflicts_with_all = ["tls_cert", "tls_key"])]
    pub tls_san: Vec<String>,
    /// Serve plain HTTP even on a non-loopback address (tokens then cross the network in clear
    /// text: only behind a TLS-terminating proxy on a trusted network).
    #[arg(long, env = "KUMOD_INSECURE_HTTP", conflicts_with_all = ["tls_cert", "tls_key", "tls_self_signed"])]
    pub insecure_http: bool,
}

/// The certificate kumod serves, ready for rustls.
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    /// SHA-256 of the server certificate (DER), as `AB:CD:…`.
    pub fingerprint: String,
    /// Where the certificate came from (for the log).
    pub source: String,
}

/// What kumod will serve on `listen`, decided from the flags.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    Plain,
    SelfSigned,
    Files { cert: PathBuf, key: PathBuf },
}

fn plan(args: &TlsArgs, listen: SocketAddr) -> Plan {
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Plan::Files { cert: cert.clone(), key: key.clone() },
        _ if args.tls_self_signed => Plan::SelfSigned,
        _ if listen.ip().is_loopback() || args.insecure_http => Plan::Plain,
        _ => Plan::SelfSigned,
    }
}

/// Decides and prepares TLS for `listen` (before anything else starts, so a bad certificate
/// refuses the start). `None`: plain HTTP. Writes the fingerprint to `DATA_DIR/tls/fingerprint`.
pub fn setup(args: &TlsArgs, listen: SocketAddr, data_dir: &Path) -> anyhow::Result<Option<ServerTls>> {
    let tls = match plan(args, listen) {
        Plan::Plain => {
            if !listen.ip().is_loopback() {
                let msg = format!(
                    "kumod serves PLAIN HTTP on the non-loopback address {listen} (--insecure-http): API tokens, \
                     passwords and session cookies cross the network in clear text. Serve TLS instead \
                     (--tls-cert/--tls-key or --tls-self-signed), or listen on 127.0.0.1 behind a TLS proxy."
                );
                tracing::warn!("{msg}");
                eprintln!("WARNING: {msg}");
            }
            return Ok(None);
        }
        Plan::Files { cert, key } => {
            warn_if_key_readable(&key);
            let chain = read_chain(&cert)?;
            let key_der = read_key(&key)?;
            ServerTls::new(chain, key_der, format!("certificate {}", cert.display()))?
        }
        Plan::SelfSigned => {
            if !args.tls_self_signed {
                tracing::info!(
                    "listening on the non-loopback address {listen} without --tls-cert: serving HTTPS with \
                     the self-signed certificate in DATA_DIR/tls (--insecure-http to serve plain HTTP)"
                );
            }
            self_signed(&data_dir.join("tls"), &names(listen, &args.tls_san))?
        }
    };
    let dir = data_dir.join("tls");
    private_dir(&dir)?;
    write_atomic(&dir.join("fingerprint"), format!("{}\n", tls.fingerprint).as_bytes(), 0o644)?;
    tracing::info!(fingerprint = %tls.fingerprint, "serving HTTPS with the {}", tls.source);
    Ok(Some(tls))
}

impl ServerTls {
    fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, source: String) -> anyhow::Result<Self> {
        let Some(leaf) = chain.first() else { bail!("the {source} holds no certificate") };
        let fingerprint = fingerprint(leaf);
        let config = server_config_for(chain, key).with_context(|| format!("the {source}"))?;
        Ok(ServerTls { config, fingerprint, source })
    }
}

/// Names of the self-signed certificate: the listen IP (unless it is a wildcard), localhost,
/// 127.0.0.1, ::1, the machine's hostname, and `--tls-san` extras; no duplicates.
fn names(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |n: String| {
        let n = n.trim().to_string();
        if !n.is_empty() && !names.contains(&n) {
            names.push(n);
        }
    };
    if !listen.ip().is_unspecified() {
        add(listen.ip().to_string());
    }
    for n in ["localhost", "127.0.0.1", "::1"] {
        add(n.to_string());
    }
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        add(h.trim().to_lowercase());
    }
    for n in extra {
        add(n.clone());
    }
    names
}

/// The self-signed certificate of `dir` (made at the first start, reused afterwards; see
/// `kumo_host_rpc::tls::load_or_make`).
fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<ServerTls> {
    let made = load_or_make(dir, names)?;
    let config = server_config(&made).with_context(|| format!("the self-signed certificate in {}", dir.display()))?;
    let source = format!("self-signed certificate {}", dir.join("cert.pem").display());
    Ok(ServerTls { config, fingerprint: made.fingerprint, source })
}

fn read_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("read the TLS certificate {}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
    if chain.is_empty() {
        bail!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(chain)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).with_context(|| format!("read the TLS key {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .with_context(|| format!("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display()))
}

fn warn_if_key_readable(path: &Path) {
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!("the TLS key {} is readable by other users; chmod 600 it", path.display());
        }
    }
}

/// Serves the API and the dashboard on `listener` until `shutdown`: over TLS when `tls` is set.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<ServerTls>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Some(tls) = tls else {
        return Ok(kumo_control::http::serve_with(app, kumo_web::router(), listener, shutdown).await?);
    };
    let router = kumo_control::http::router_with(app, kumo_web::router()).layer(axum::middleware::from_fn(mark_https));
    kumo_host_rpc::server::serve_tls(listener, router, tls.config, shutdown).await
}

/// Gives the request the `https` scheme in its URI (as RFC 9112 §3.3 reconstructs the target),
/// so handlers see it came over TLS — the dashboard then marks its cookies `Secure`.
async fn mark_https(mut req: Request, next: Next) -> Response {
    if req.uri().scheme().is_none() {
        let authority = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<Authority>().ok())
            .unwrap_or_else(|| Authority::from_static("localhost"));
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTPS);
        parts.authority = Some(authority);
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(axum::http::uri::PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn loopback_is_plain_other_addresses_get_tls_unless_insecure() {
        let none = TlsArgs::default();
        assert_eq!(plan(&none, addr("127.0.0.1:7400")), Plan::Plain);
        assert_eq!(plan(&none, addr("[::1]:7400")), Plan::Plain);
        assert_eq!(plan(&none, addr("0.0.0.0:7400")), Plan::SelfSigned);
        assert_eq!(plan(&none, addr("192.0.2.7:7400")), Plan::SelfSigned);
        let insecure = TlsArgs { insecure_http: true, ..TlsArgs::default() };
        assert_eq!(plan(&insecure, addr("192.0.2.7:7400")), Plan::Plain);
        let ss = TlsArgs { tls_self_signed: true, ..TlsArgs::default() };
        assert_eq!(plan(&ss, addr("127.0.0.1:0")), Plan::SelfSigned);
        let files = TlsArgs { tls_cert: Some("c.pem".into()), tls_key: Some("k.pem".into()), ..TlsArgs::default() };
        assert_eq!(plan(&files, addr("127.0.0.1:0")), Plan::Files { cert: "c.pem".into(), key: "k.pem".into() });
    }

    #[test]
    fn names_hold_the_listen_address_and_the_local_names_once() {
        let n = names(addr("192.0.2.7:7400"), &["kumo.example".into(), "localhost".into()]);
        assert_eq!(&n[..4], ["192.0.2.7", "localhost", "127.0.0.1", "::1"]);
        assert!(n.contains(&"kumo.example".to_string()));
        assert_eq!(n.iter().filter(|x| *x == "localhost").count(), 1);
        let wild = names(addr("0.0.0.0:7400"), &[]);
        assert!(!wild.contains(&"0.0.0.0".to_string()), "{wild:?}");
    }

    #[test]
    fn bad_files_refuse_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("c.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let err = read_chain(&cert).expect_err("no cert");
        assert!(format!("{err:#}").contains("c.pem"), "{err:#}");
        let err = read_key(&dir.path().join("missing.pem")).expect_err("missing");
        assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
        // A certificate with another certificate's key.
        let a = self_signed(&dir.path().join("a"), &["localhost".into()]).expect("a");
        let _ = a;
        self_signed(&dir.path().join("b"), &["localhost".into()]).expect("b");
        let chain = read_chain(&dir.path().join("a/cert.pem")).expect("chain");
        let key = read_key(&dir.path().join("b/key.pem")).expect("key");
        let err = ServerTls::new(chain, key, "test certificate".into()).err().expect("mismatch");
        assert!(format!("{err:#}").contains("cannot be used together"), "{err:#}");
    }
}
