//! Which server certificates the CLI trusts over https: the system's roots, plus a certificate
//! given with `--ca-cert` (e.g. kumod's self-signed `DATA_DIR/tls/cert.pem`), and/or the server
//! certificate's SHA-256 pinned with `--fingerprint` (then the pin, not the roots or the name, is
//! the server's identity). There is deliberately no way to turn verification off.

use anyhow::{bail, Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// Extra trust for one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// PEM certificate(s) trusted besides the system's roots.
    pub ca_pem: Option<String>,
    /// The server certificate's SHA-256, normalised to `AB:CD:…`.
    pub fingerprint: Option<String>,
}

impl Trust {
    pub fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.fingerprint.is_none()
    }
}

/// Reads a PEM certificate file, checking it holds at least one certificate.
pub fn read_ca(path: &Path) -> Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading the CA certificate {}", path.display()))?;
    check_pem(&text).with_context(|| format!("the CA certificate {}", path.display()))?;
    Ok(text)
}

fn check_pem(text: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("is not a PEM certificate file ({e:?})"))?;
    if certs.is_empty() {
        bail!("holds no PEM certificate (-----BEGIN CERTIFICATE-----)");
    }
    Ok(certs)
}

/// Accepts a SHA-256 fingerprint as hex, with or without colons or a `sha256:` prefix, any case;
/// returns it as `AB:CD:…` (what kumod writes to DATA_DIR/tls/fingerprint).
pub fn parse_fingerprint(text: &str) -> Result<String> {
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

fn fingerprint_of(cert: &[u8]) -> String {
    Sha256::digest(cert).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// Configures `builder` to trust what `trust` says (and the system's roots unless pinned).
pub fn apply(
    builder: reqwest::blocking::ClientBuilder,
    trust: &Trust,
) -> Result<reqwest::blocking::ClientBuilder, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = match &trust.ca_pem {
        Some(pem) => Some(check_pem(pem).map_err(|e| format!("the CA certificate {e}"))?),
        None => None,
    };
    match (&trust.fingerprint, ca) {
        (None, None) => Ok(builder),
        (None, Some(certs)) => {
            let mut builder = builder;
            for der in certs {
                builder = builder.add_root_certificate(
                    reqwest::Certificate::from_der(der.as_ref()).map_err(|e| format!("the CA certificate: {e}"))?,
                );
            }
            Ok(builder)
        }
        (Some(pin), ca) => {
            let want = parse_fingerprint(pin).map_err(|e| e.to_string())?;
            // With a CA as well, the chain and the name are checked too; else the pin alone.
            let chain = match ca {
                Some(certs) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for der in certs {
                        roots.add(der).map_err(|e| format!("the CA certificate: {e}"))?;
                    }
                    Some(
                        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                            .build()
                            .map_err(|e| format!("the CA certificate: {e}"))?,
                    )
                }
                None => None,
            };
            let verifier = Pinned { want, chain, algorithms: provider.signature_verification_algorithms };
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth();
            Ok(builder.use_preconfigured_tls(config))
        }
    }
}

/// Accepts exactly the server certificate with the pinned SHA-256 (and, when a CA is given, only
/// if it also chains to it and names the server). Handshake signatures are still verified, so
/// only the holder of that certificate's key gets through.
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
        let got = fingerprint_of(end_entity.as_ref());
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

/// The TLS failure inside a reqwest error, worded for a person: `None` when it is not one.
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
    fn a_ca_file_must_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("kumo-cli-ca-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("ca.pem");
        std::fs::write(&f, "hello").expect("write");
        let err = read_ca(&f).expect_err("not pem");
        assert!(format!("{err:#}").contains("ca.pem"), "{err:#}");
        assert!(read_ca(&dir.join("missing.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
