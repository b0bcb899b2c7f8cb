//! Which server certificates the CLI trusts over https: the system's roots, plus a certificate
//! given with `--ca-cert` (e.g. kumod's self-signed `DATA_DIR/tls/cert.pem`), and/or the server
//! certificate's SHA-256 pinned with `--fingerprint` (then the pin, not the roots or the name, is
//! the server's identity). There is deliberately no way to turn verification off. The pinning
//! itself is shared with the host agent's client (`kumo_host_rpc::tls`).

use anyhow::{Context, Result};
use kumo_host_rpc::tls::{certs_of_pem, pinned_client_config};
pub use kumo_host_rpc::tls::{parse_fingerprint, tls_failure};
use std::path::Path;

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
    certs_of_pem(&text).with_context(|| format!("the CA certificate {}", path.display()))?;
    Ok(text)
}

/// Configures `builder` to trust what `trust` says (and the system's roots unless pinned).
pub fn apply(
    builder: reqwest::blocking::ClientBuilder,
    trust: &Trust,
) -> Result<reqwest::blocking::ClientBuilder, String> {
    let ca = match &trust.ca_pem {
        Some(pem) => Some(certs_of_pem(pem).map_err(|e| format!("the CA certificate {e}"))?),
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
            // With a CA as well, the chain and the name are checked too; else the pin alone.
            let config = pinned_client_config(pin, ca).map_err(|e| format!("{e:#}"))?;
            Ok(builder.use_preconfigured_tls(config))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
