//! TLS shared by Kumo's servers and clients: self-signed certificates (made in memory, or made once
//! into a directory and reused), their SHA-256 fingerprints, a rustls server configuration, and
//! the client side of pinning — accepting exactly the certificate with a given fingerprint.
//!
//! Used by the host agent's API (a fresh or kept certificate per agent; the controller pins it),
//! by `kumod` (its API's certificate, see crates/kumod/src/tls.rs) and by the `kumo` CLI
//! (`--fingerprint`). Everything runs on rustls' `ring` provider.

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

// ---- certificates and fingerprints

/// A self-signed certificate and its key, as PEM, with the certificate's fingerprint.
#[derive(Clone)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    /// SHA-256 of the certificate (DER), as `AB:CD:…` (see [`fingerprint`]).
    pub fingerprint: String,
}

impl std::fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("SelfSigned").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// SHA-256 of a DER certificate as upper-case hex pairs joined by colons (as `openssl x509
/// -fingerprint -sha256` and browsers show it).
pub fn fingerprint(cert_der: &[u8]) -> String {
    Sha256::digest(cert_der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// The [`fingerprint`] of the first certificate of a PEM text.
pub fn fingerprint_of_pem(cert_pem: &str) -> anyhow::Result<String> {
    let chain = certs_of_pem(cert_pem)?;
    Ok(fingerprint(chain[0].as_ref()))
}

/// Accepts a SHA-256 fingerprint as hex, with or without colons or a `sha256:` prefix, any case;
/// returns it as `AB:CD:…` (the form [`fingerprint`] makes).
pub fn parse_fingerprint(text: &str) -> anyhow::Result<String> {
    let t = text.trim();
    let t = t.strip_prefix("sha256:").or_else(|| t.strip_prefix("SHA256:")).unwrap_or(t);
    let hex: String = t.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!(
            "'{text}' is not a SHA-256 fingerprint: give 64 hex digits (colons allowed), as kumod writes to \
             DATA_DIR/tls/fingerprint"
        );
    }
    let upper = hex.to_ascii_uppercase();
    Ok(upper.as_bytes().chunks(2).map(|p| String::from_utf8_lossy(p).into_owned()).collect::<Vec<_>>().join(":"))
}

/// The certificates of a PEM text (at least one).
pub fn certs_of_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("is not a PEM certificate file ({e:?})"))?;
    if certs.is_empty() {
        bail!("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(certs)
}

/// A fresh self-signed certificate (ECDSA P-256, ten years) for `names` (DNS names or IP
/// addresses), in memory.
pub fn self_signed(names: &[String]) -> anyhow::Result<SelfSigned> {
    let key = rcgen::KeyPair::generate().context("generate the TLS key")?;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .with_context(|| format!("a certificate for the names {names:?}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, format!("kumo {}", names.join(" ")));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    let cert = params.self_signed(&key).context("self-sign the TLS certificate")?;
    Ok(SelfSigned { fingerprint: fingerprint(cert.der()), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Loads `dir/cert.pem` and `dir/key.pem`, or makes them (a [`self_signed`] certificate; the key
/// 0600, the directory 0700) when either is missing. The names it was made for are kept in
/// `dir/names`; a load with other names keeps the certificate (its fingerprint is what clients
/// pinned) and warns how to get a new one. A key readable by others is set back to 0600.
pub fn load_or_make(dir: &Path, names: &[String]) -> anyhow::Result<SelfSigned> {
    private_dir(dir)?;
    let (cert_path, key_path, names_path) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("names"));
    if !(cert_path.exists() && key_path.exists()) {
        let made = self_signed(names)?;
        // Key first: a crash between the two leaves no certificate, so the next start makes both.
        write_atomic(&key_path, made.key_pem.as_bytes(), 0o600)?;
        write_atomic(&names_path, format!("{}\n", names.join("\n")).as_bytes(), 0o644)?;
        write_atomic(&cert_path, made.cert_pem.as_bytes(), 0o644)?;
        tracing::info!(names = ?names, "made a self-signed TLS certificate in {}", dir.display());
        return Ok(made);
    }
    fix_key_mode(&key_path)?;
    let made_for: Vec<String> =
        std::fs::read_to_string(&names_path).unwrap_or_default().lines().map(str::to_string).collect();
    let missing: Vec<&String> = names.iter().filter(|n| !made_for.contains(n)).collect();
    if !missing.is_empty() {
        tracing::warn!(
            "the self-signed certificate in {} does not name {missing:?}; clients that check names (a CA \
             certificate) will refuse those. Clients that pin its fingerprint are unaffected. To make a new \
             certificate, stop the server, delete that directory and start again (clients must trust the new one).",
            dir.display()
        );
    }
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
    let (cert_pem, key_pem) = (read(&cert_path)?, read(&key_path)?);
    let fingerprint = fingerprint_of_pem(&cert_pem).with_context(|| format!("{}", cert_path.display()))?;
    Ok(SelfSigned { cert_pem, key_pem, fingerprint })
}

// ---- the server side

/// A rustls server configuration (ring, HTTP/1.1) serving `s`.
pub fn server_config(s: &SelfSigned) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = certs_of_pem(&s.cert_pem).context("the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(s.key_pem.as_bytes())
        .context("the key holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")?;
    server_config_for(chain, key)
}

/// A rustls server configuration (ring, HTTP/1.1) serving `chain` (the server's certificate
/// first) with `key`; fails when the key is not the certificate's.
pub fn server_config_for(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        // rustls checks here that the key belongs to the certificate.
        .with_single_cert(chain, key)
        .context("the certificate and its key cannot be used together")?;
    // HTTP/1.1 only (server-sent events of the API; one call per request for the agent).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

// ---- the client side: pinning

/// A rustls client configuration that accepts exactly the server certificate whose SHA-256 is
/// `fingerprint` (any form [`parse_fingerprint`] reads). With `ca`, the certificate must also
/// chain to it and name the server. The name is otherwise not checked: the pin is the identity.
/// Handshake signatures are still verified, so only the holder of that certificate's key gets
/// through.
pub fn pinned_client_config(
    fingerprint: &str,
    ca: Option<Vec<CertificateDer<'static>>>,
) -> anyhow::Result<rustls::ClientConfig> {
    let want = parse_fingerprint(fingerprint)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match ca {
        Some(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for der in certs {
                roots.add(der).context("the CA certificate")?;
            }
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .context("the CA certificate")?,
            )
        }
        None => None,
    };
    let verifier = Pinned { want, chain, algorithms: provider.signature_verification_algorithms };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// Accepts exactly the server certificate with the pinned SHA-256 (see [`pinned_client_config`]).
#[derive(Debug)]
struct Pinned {
    want: String,
    chain: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        }
        let got = fingerprint(end_entity.as_ref());
        // Both are public values (the certificate is sent in clear): no constant-time need.
        if got == self.want {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 fingerprint {got}, not the pinned {}",
                self.want
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The TLS failure inside an error (e.g. reqwest's), worded for a person: `None` when it is not
/// one.
pub fn tls_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let r = find_rustls_error(err)?;
    Some(match r {
        rustls::Error::General(msg) => msg.clone(),
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            format!("the server's certificate is not trusted ({r})")
        }
        rustls::Error::InvalidMessage(_) => {
            format!("the server does not speak TLS ({r}); is it serving plain http://?")
        }
        other => other.to_string(),
    })
}

fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // rustls errors travel inside (nested) io::Errors, whose source() skips the wrapped
        // error itself: look inside instead.
        current = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    None
}

// ---- files

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

/// Makes `dir` (and its parents) and sets it to 0700.
pub fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod 700 {}", dir.display()))
}

/// Writes through a temporary file created with `mode` and renamed over `path`, so a crash
/// leaves either the old file or the whole new one, and a key is never briefly world-readable.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_normalised_and_checked() {
        let hex = "ab".repeat(32);
        let want = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&hex).expect("plain"), want);
        assert_eq!(parse_fingerprint(&want).expect("colons"), want);
        assert_eq!(parse_fingerprint(&format!("sha256:{hex}")).expect("prefix"), want);
        assert!(parse_fingerprint("abcd").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn tls_errors_are_found_inside_nested_io_errors() {
        use std::io::{Error, ErrorKind};
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = Error::other(Error::new(ErrorKind::InvalidData, cert));
        let text = tls_failure(&nested).expect("found");
        assert!(text.contains("not trusted") && text.contains("UnknownIssuer"), "{text}");
        assert_eq!(tls_failure(&Error::other("connection refused")), None);
    }

    #[test]
    fn a_fresh_certificate_serves_and_its_fingerprint_is_its_pems() {
        let s = self_signed(&["127.0.0.1".into(), "localhost".into()]).expect("make");
        assert_eq!(s.fingerprint.len(), 32 * 3 - 1);
        assert_eq!(fingerprint_of_pem(&s.cert_pem).expect("pem"), s.fingerprint);
        server_config(&s).expect("config");
        let other = self_signed(&["localhost".into()]).expect("other");
        assert_ne!(other.fingerprint, s.fingerprint);
        let mixed = SelfSigned { key_pem: other.key_pem, ..s };
        let err = server_config(&mixed).expect_err("mismatch");
        assert!(format!("{err:#}").contains("cannot be used together"), "{err:#}");
        assert!(!format!("{mixed:?}").contains("PRIVATE"));
    }

    #[test]
    fn a_kept_certificate_is_made_once_with_a_private_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_dir = dir.path().join("tls");
        let first = load_or_make(&tls_dir, &["127.0.0.1".into(), "localhost".into()]).expect("make");
        let mode = std::fs::metadata(tls_dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Loosened by hand: fixed at the next load, and the same certificate comes back.
        std::fs::set_permissions(tls_dir.join("key.pem"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let again = load_or_make(&tls_dir, &["127.0.0.1".into(), "kumo.example".into()]).expect("load");
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.key_pem, first.key_pem);
        let mode = std::fs::metadata(tls_dir.join("key.pem")).expect("key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
