//! HTTPS for kumod: the TLS flags, the certificate (given PEM files, or a self-signed one made at
//! first start into `DATA_DIR/tls/` and reused afterwards), its SHA-256 fingerprint, and serving
//! the API + dashboard over TLS (axum-server with rustls on the ring provider).
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

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
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            // rustls checks here that the key belongs to the certificate.
            .with_single_cert(chain, key)
            .with_context(|| format!("the {source} and its key cannot be used together"))?;
        // The API is served over HTTP/1.1 (as on plain HTTP; server-sent events).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls { config: Arc::new(config), fingerprint, source })
    }
}

/// SHA-256 of a DER certificate as upper-case hex pairs joined by colons (as `openssl x509
/// -fingerprint -sha256` and browsers show it).
pub fn fingerprint(cert: &[u8]) -> String {
    let digest = Sha256::digest(cert);
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
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

/// Loads `dir/{cert,key}.pem`, or makes them when either is missing. The names it was made for
/// are kept in `dir/names`; a start with other names keeps the certificate (its fingerprint is
/// what clients pinned) and says how to get a new one.
fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<ServerTls> {
    private_dir(dir)?;
    let (cert_path, key_path, names_path) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("names"));
    if !(cert_path.exists() && key_path.exists()) {
        let key = rcgen::KeyPair::generate().context("generate the TLS key")?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())
            .with_context(|| format!("a certificate for the names {names:?}"))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("kumod {}", names.join(" ")));
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let cert = params.self_signed(&key).context("self-sign the TLS certificate")?;
        // Key first: a crash between the two leaves no certificate, so the next start makes both.
        write_atomic(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write_atomic(&names_path, format!("{}\n", names.join("\n")).as_bytes(), 0o644)?;
        write_atomic(&cert_path, cert.pem().as_bytes(), 0o644)?;
        tracing::info!(names = ?names, "made a self-signed TLS certificate in {}", dir.display());
    } else {
        fix_key_mode(&key_path)?;
        let made_for: Vec<String> =
            std::fs::read_to_string(&names_path).unwrap_or_default().lines().map(str::to_string).collect();
        let missing: Vec<&String> = names.iter().filter(|n| !made_for.contains(n)).collect();
        if !missing.is_empty() {
            tracing::warn!(
                "the self-signed certificate in {} does not name {missing:?}; clients that check names \
                 (--ca-cert) will refuse those. Pinned clients (--fingerprint) are unaffected. To make a new \
                 certificate, stop kumod, delete that directory and start again (clients must trust the new one).",
                dir.display()
            );
        }
    }
    ServerTls::new(
        read_chain(&cert_path)?,
        read_key(&key_path)?,
        format!("self-signed certificate {}", cert_path.display()),
    )
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

/// Our own key must be owner-only; a looser mode (copied around, restored from a backup) is fixed.
fn fix_key_mode(path: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.permissions().mode();
    if mode & 0o077 != 0 {
        tracing::warn!("the TLS key {} had mode {:o}; set to 600", path.display(), mode & 0o777);
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod 600 {}", path.display()))?;
    }
    Ok(())
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 700 {}", dir.display()))
}

/// Writes through a temporary file created with `mode` and renamed over `path`, so a crash
/// leaves either the old file or the whole new one, and a key is never briefly world-readable.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("write {}", path.display()))
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
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Open event streams never end by themselves: give requests a moment, then close.
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await?;
    Ok(())
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
    fn the_self_signed_certificate_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_dir = dir.path().join("tls");
        let first = self_signed(&tls_dir, &["127.0.0.1".into(), "localhost".into()]).expect("make");
        let mode = std::fs::metadata(tls_dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        // Loosened by hand: fixed at the next load, and the same certificate comes back.
        std::fs::set_permissions(tls_dir.join("key.pem"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let again = self_signed(&tls_dir, &["127.0.0.1".into(), "kumo.example".into()]).expect("load");
        assert_eq!(again.fingerprint, first.fingerprint);
        let mode = std::fs::metadata(tls_dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
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
