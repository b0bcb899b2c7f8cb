//! The one error body of the API (see docs/api.md): `{request_id, error_code, message}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable error class. Each maps to exactly one HTTP status (in `kumo-control`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ErrorCode {
    /// Malformed or out-of-range input, or a reference to something that does not exist (400).
    InvalidValue,
    /// No or bad credentials (401).
    Unauthenticated,
    /// Authenticated but not allowed (403).
    Forbidden,
    /// The resource does not exist or the caller may not know it exists (404).
    NotFound,
    /// A resource with that name already exists under the same parent (409).
    ObjectAlreadyExists,
    /// The action makes no sense in the resource's current state (409).
    InvalidState,
    /// The path exists but not with this HTTP method (405).
    MethodNotAllowed,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// A project quota would be exceeded (403).
    QuotaExceeded,
    /// Too many attempts (e.g. failed logins); retry after the `Retry-After` header's seconds (429).
    TooManyRequests,
    /// No host has room for the request (507).
    InsufficientCapacity,
    /// A bug or an unexpected failure; details are in the server log under the request id (500).
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidValue => "InvalidValue",
            ErrorCode::Unauthenticated => "Unauthenticated",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "NotFound",
            ErrorCode::ObjectAlreadyExists => "ObjectAlreadyExists",
            ErrorCode::InvalidState => "InvalidState",
            ErrorCode::MethodNotAllowed => "MethodNotAllowed",
            ErrorCode::PayloadTooLarge => "PayloadTooLarge",
            ErrorCode::QuotaExceeded => "QuotaExceeded",
            ErrorCode::TooManyRequests => "TooManyRequests",
            ErrorCode::InsufficientCapacity => "InsufficientCapacity",
            ErrorCode::Internal => "Internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error body returned with every 4xx and 5xx response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Id of the request; the server log has the details under it.
    pub request_id: String,
    /// Machine-readable error class.
    pub error_code: ErrorCode,
    /// What is wrong and how to fix it.
    pub message: String,
}
