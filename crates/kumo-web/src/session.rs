//! Dashboard sessions: the session cookie, the CSRF token, and the [`Session`] extractor that
//! turns a cookie into the same [`OpContext`] the API builds from a bearer token.
//!
//! The cookie `kumo_session` holds an API token — a session token from logging in with a user
//! name and password, or a token an operator pasted — and is `HttpOnly; SameSite=Strict; Path=/`
//! (plus `Secure` when the request came over TLS). It is resolved by
//! [`kumo_control::context::resolve`], the function the API's auth middleware uses, so the
//! dashboard authorises exactly as the API does: every page calls the app layer with the
//! resulting [`OpContext`].
//!
//! CSRF: every state-changing request must carry the session's CSRF token, in the `_csrf` form
//! field or the `X-CSRF-Token` header (htmx sends it from `hx-headers` on `<body>`; the image
//! upload's XHR sets it). The token is derived from the session token (SHA-256 with a domain
//! prefix), so it needs no server-side state, changes with every session, and cannot be computed
//! by a page that cannot read the HttpOnly cookie. The login form, which has no session yet, uses
//! a double-submit cookie (`kumo_login_csrf`) instead.

use crate::render::{self, WebError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kumo_control::context::{Actor, OpContext};
use kumo_control::error::current_request_id;
use kumo_control::App;
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "kumo_session";
pub const LOGIN_CSRF_COOKIE: &str = "kumo_login_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Cookie values: a session issued by the dashboard's login (revoked at logout) or a token the
/// user pasted (left valid at logout: it is their API token).
const ISSUED_PREFIX: &str = "s.";
const PASTED_PREFIX: &str = "t.";

/// A logged-in dashboard user.
#[derive(Clone)]
pub struct Session {
    pub ctx: OpContext,
    pub token: String,
    /// The dashboard issued this session at login (logout revokes it).
    pub issued: bool,
    pub csrf: String,
}

impl Session {
    pub fn actor(&self) -> &Actor {
        &self.ctx.actor
    }

    /// Checks the CSRF token of a state-changing request: the `_csrf` form field, else the
    /// `X-CSRF-Token` header. Missing or wrong → 403.
    pub fn check_csrf(&self, headers: &HeaderMap, form_field: Option<&str>) -> Result<(), WebError> {
        let given = form_field
            .filter(|s| !s.is_empty())
            .or_else(|| headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        if constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            Err(WebError::new(
                StatusCode::FORBIDDEN,
                "the form's security token (CSRF) is missing or stale; reload the page and try again",
            ))
        }
    }
}

/// A form that carries the CSRF token in its `_csrf` field.
pub trait CsrfField {
    fn csrf_field(&self) -> &str;
}

impl Session {
    /// Checks the CSRF token, then hands out the form. The check comes first: a request without
    /// the token is 403 whatever its body (even one that is not a form at all).
    pub fn checked_form<T: CsrfField>(
        &self,
        headers: &HeaderMap,
        form: Result<axum::Form<T>, axum::extract::rejection::FormRejection>,
    ) -> Result<T, WebError> {
        match form {
            Ok(axum::Form(f)) => {
                self.check_csrf(headers, Some(f.csrf_field()))?;
                Ok(f)
            }
            Err(e) => {
                self.check_csrf(headers, None)?;
                Err(WebError::new(StatusCode::BAD_REQUEST, format!("invalid form: {}", e.body_text())))
            }
        }
    }
}

/// The CSRF token of a session.
pub fn csrf_for(token: &str) -> String {
    hex::encode(Sha256::digest(format!("kumo-dashboard-csrf\0{token}").as_bytes()))
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie of the request, by name.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether the request reached us over TLS (directly or through a proxy that says so).
pub fn is_tls(parts_headers: &HeaderMap, scheme: Option<&str>) -> bool {
    scheme == Some("https")
        || parts_headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|p| p == "https")
}

/// A `Set-Cookie` value with the dashboard's attributes; `max_age` 0 deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool, path: &str) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let s = format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn session_cookie_value(token: &str, issued: bool) -> String {
    format!("{}{token}", if issued { ISSUED_PREFIX } else { PASTED_PREFIX })
}

fn parse_cookie_value(v: &str) -> Option<(String, bool)> {
    if let Some(t) = v.strip_prefix(ISSUED_PREFIX) {
        Some((t.to_string(), true))
    } else {
        v.strip_prefix(PASTED_PREFIX).map(|t| (t.to_string(), false))
    }
}

/// Whether the request was made by htmx (it wants a fragment, and `HX-Redirect` instead of 303).
pub fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// Not logged in (or the session expired / was revoked): back to the login page, keeping where
/// the user wanted to go.
fn to_login(parts: &Parts) -> Response {
    let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = format!("/login?next={}", render::urlencode(next));
    if is_htmx(&parts.headers) {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert("hx-redirect", v);
        }
        r
    } else {
        Redirect::to(&target).into_response()
    }
}

impl FromRequestParts<Arc<App>> for Session {
    type Rejection = Response;
    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        let Some((token, issued)) = cookie(&parts.headers, SESSION_COOKIE).and_then(parse_cookie_value) else {
            return Err(to_login(parts));
        };
        match kumo_control::context::resolve(app, &token).await {
            Ok(actor) => Ok(Session {
                csrf: csrf_for(&token),
                ctx: OpContext { actor, request_id: current_request_id() },
                token,
                issued,
            }),
            Err(e) if e.code == kumo_types::ErrorCode::Unauthenticated => Err(to_login(parts)),
            Err(e) => Err(WebError::from(e).into_response()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_is_per_session_and_compared_in_full() {
        let a = csrf_for("kumo_aaa");
        assert_eq!(a, csrf_for("kumo_aaa"));
        assert_ne!(a, csrf_for("kumo_aab"));
        assert!(constant_time_eq(a.as_bytes(), a.as_bytes()));
        assert!(!constant_time_eq(a.as_bytes(), &a.as_bytes()[..10]));
        assert!(!constant_time_eq(b"", a.as_bytes()));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; kumo_session=s.kumo_x; b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("s.kumo_x"));
        assert_eq!(parse_cookie_value("s.kumo_x"), Some(("kumo_x".to_string(), true)));
        assert_eq!(parse_cookie_value("t.kumo_x"), Some(("kumo_x".to_string(), false)));
        assert_eq!(parse_cookie_value("kumo_x"), None);
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn session_cookie_has_the_secure_attributes() {
        let v = set_cookie(SESSION_COOKIE, "s.t", 60, true, "/");
        let s = v.to_str().unwrap_or_default();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure", "Max-Age=60"] {
            assert!(s.contains(attr), "{s} lacks {attr}");
        }
        let plain = set_cookie(SESSION_COOKIE, "s.t", 60, false, "/");
        assert!(!plain.to_str().unwrap_or_default().contains("Secure"));
    }
}
