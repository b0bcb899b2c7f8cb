//! Errors of talking to the API, worded for the person at the terminal.
//!
//! The API answers every 4xx/5xx with `{request_id, error_code, message}`; that becomes
//! `<message> (<error_code>, request <request_id>)` — main prefixes `error: `. Transport failures
//! name the server URL, since a wrong or unreachable URL is their usual cause.

use serde::Deserialize;

/// The API's error body. Mirrors `kumo_types::ErrorBody`, but keeps `error_code` a string so a
/// newer server's new codes still show up verbatim instead of failing to parse.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorBody {
    pub request_id: String,
    pub error_code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API refused the request and said why.
    #[error("{} ({}, request {})", body.message, body.error_code, body.request_id)]
    Api { status: u16, body: ApiErrorBody },

    /// A 4xx/5xx without the API's error body (a proxy, or not a Kumo server).
    #[error("{method} {url} answered HTTP {status}{}", snippet_suffix(body))]
    Status { method: String, url: String, status: u16, body: String },

    /// The server could not be reached at all.
    #[error("cannot reach the Kumo API at {base}: {reason} (check --url, KUMO_URL or `kumo login`)")]
    Connect { base: String, reason: String },

    /// The TLS handshake failed: usually a certificate the CLI was not told to trust.
    #[error(
        "TLS with the Kumo API at {base} failed: {reason}. Trust the server's certificate with \
         `--ca-cert FILE` (KUMO_CA_CERT) or pin it with `--fingerprint SHA256` (KUMO_FINGERPRINT); \
         `kumo login` saves either (kumod writes DATA_DIR/tls/cert.pem and DATA_DIR/tls/fingerprint)"
    )]
    Tls { base: String, reason: String },

    /// The TLS trust given cannot be used (a bad CA certificate or fingerprint).
    #[error("cannot set up TLS: {reason}")]
    Trust { reason: String },

    /// The request was sent but failed on the way (timeout, reset connection, …).
    #[error("request {method} {url} failed: {reason}")]
    Transport { method: String, url: String, reason: String },

    /// A success status with a body that is not what the API promises.
    #[error("unexpected response from {url}: {reason}")]
    Decode { url: String, reason: String },

    /// The configured server URL cannot be used.
    #[error("invalid server URL '{url}': {reason}")]
    BadUrl { url: String, reason: String },
}

impl ClientError {
    /// The HTTP status, when the server answered with an error status.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Builds the error for a 4xx/5xx answer from its body.
    pub fn from_status(method: &str, url: &str, status: u16, body: &str) -> ClientError {
        match serde_json::from_str::<ApiErrorBody>(body) {
            Ok(body) => ClientError::Api { status, body },
            Err(_) => {
                ClientError::Status { method: method.to_string(), url: url.to_string(), status, body: body.to_string() }
            }
        }
    }
}

fn snippet_suffix(body: &str) -> String {
    let text = body.trim();
    if text.is_empty() {
        return String::new();
    }
    let snippet: String = text.chars().take(200).collect();
    let ellipsis = if snippet.len() < text.len() { "…" } else { "" };
    format!(": {snippet}{ellipsis}")
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which is what a person
/// needs; reqwest's outer layers only repeat the URL.
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_read_as_message_code_and_request() {
        let body = r#"{"request_id":"req-42","error_code":"NotFound","message":"instance 'web1' not found in project 'demo'"}"#;
        let err = ClientError::from_status("GET", "http://x/v1/instances/web1", 404, body);
        assert_eq!(err.to_string(), "instance 'web1' not found in project 'demo' (NotFound, request req-42)");
        assert!(err.is_not_found());
    }

    #[test]
    fn unknown_error_codes_are_kept_verbatim() {
        let body = r#"{"request_id":"r1","error_code":"SomethingNew","message":"m"}"#;
        let err = ClientError::from_status("POST", "u", 409, body);
        assert_eq!(err.to_string(), "m (SomethingNew, request r1)");
    }

    #[test]
    fn non_api_errors_show_status_and_body() {
        let err = ClientError::from_status("GET", "http://x/v1/projects", 502, "Bad Gateway\n");
        assert_eq!(err.to_string(), "GET http://x/v1/projects answered HTTP 502: Bad Gateway");
        assert_eq!(err.status(), Some(502));
        assert!(!err.is_not_found());
        let empty = ClientError::from_status("GET", "u", 500, "");
        assert_eq!(empty.to_string(), "GET u answered HTTP 500");
    }

    #[test]
    fn connect_errors_name_the_url() {
        let err = ClientError::Connect {
            base: "http://127.0.0.1:7400".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        let text = err.to_string();
        assert!(text.contains("http://127.0.0.1:7400") && text.contains("refused"), "{text}");
    }
}
