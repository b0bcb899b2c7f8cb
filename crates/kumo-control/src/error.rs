//! The API's one error type, mapped to HTTP exactly once (here).
//!
//! `message` is what the caller sees and says how to fix the problem; `internal` is logged with
//! the request id and never sent (paths, SQL, tool stderr).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kumo_types::{ErrorBody, ErrorCode};

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub internal: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), internal: None }
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidValue, message)
    }
    pub fn not_found(kind: &str, what: impl std::fmt::Display) -> ApiError {
        ApiError::new(ErrorCode::NotFound, format!("{kind} '{what}' not found"))
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidState, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthenticated, message)
    }
    pub fn internal(context: impl std::fmt::Display) -> ApiError {
        ApiError {
            code: ErrorCode::Internal,
            message: "internal error; the server log has details under this request id".into(),
            internal: Some(context.to_string()),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidValue => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden | ErrorCode::QuotaExceeded => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::ObjectAlreadyExists | ErrorCode::InvalidState => StatusCode::CONFLICT,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::InsufficientCapacity => StatusCode::INSUFFICIENT_STORAGE,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<kumo_store::StoreError> for ApiError {
    fn from(e: kumo_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// Maps a unique-name violation to 409 `ObjectAlreadyExists` naming the thing.
pub fn already_exists(kind: &str, name: &str) -> impl FnOnce(kumo_store::StoreError) -> ApiError {
    let (kind, name) = (kind.to_string(), name.to_string());
    move |e| match e {
        kumo_store::StoreError::Conflict(_) => ApiError::new(
            ErrorCode::ObjectAlreadyExists,
            format!("{kind} '{name}' already exists; choose another name"),
        ),
        other => ApiError::internal(other),
    }
}

tokio::task_local! {
    /// The id of the request being served; set by the request-id middleware (`http::request_id`).
    pub static REQUEST_ID: String;
}

/// The current request's id, or "-" outside a request.
pub fn current_request_id() -> String {
    REQUEST_ID.try_with(|id| id.clone()).unwrap_or_else(|_| "-".into())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = current_request_id();
        if let Some(internal) = &self.internal {
            tracing::error!(%request_id, code = %self.code, "{}: {internal}", self.message);
        } else {
            tracing::debug!(%request_id, code = %self.code, "{}", self.message);
        }
        let code = self.code;
        let body = ErrorBody { request_id, error_code: code, message: self.message };
        let mut resp = (status, axum::Json(body)).into_response();
        // For the audit log's result column.
        resp.extensions_mut().insert(code);
        resp
    }
}
