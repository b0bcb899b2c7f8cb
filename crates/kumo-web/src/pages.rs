//! Login and logout, the project picker, and the embedded static assets.

use crate::render::{self, page, WebError};
use crate::session::{self, Session, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use kumo_control::app::login::{self, LoginOutcome};
use kumo_control::http::audit::{AuditNote, SourceAddr};
use kumo_control::App;
use kumo_types::{LoginRequest, PageParams};
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

/// Static assets: (file name, content type, bytes), embedded at build time.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("htmx.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/htmx.min.js")),
    ("uplot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../assets/uplot.iife.min.js")),
    ("uplot.min.css", "text/css; charset=utf-8", include_bytes!("../assets/uplot.min.css")),
    ("kumo.css", "text/css; charset=utf-8", include_bytes!("../assets/kumo.css")),
    ("kumo.js", "text/javascript; charset=utf-8", include_bytes!("../assets/kumo.js")),
];

pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, bytes)) => {
            ([(header::CONTENT_TYPE, *ct), (header::CACHE_CONTROL, "public, max-age=3600")], *bytes).into_response()
        }
        None => WebError::new(StatusCode::NOT_FOUND, format!("no asset '{file}'")).into_response(),
    }
}

pub async fn home() -> Redirect {
    Redirect::to("/projects")
}

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

/// Only local paths: `next` must not send the user to another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.starts_with("/\\") => n.to_string(),
        _ => "/projects".to_string(),
    }
}

fn login_page(status: StatusCode, csrf: &str, next: &str, username: &str, error: Option<&str>) -> Response {
    let ctx = context! { login_csrf => csrf, next => next, username => username, error => error };
    match render::render_string("login.html", ctx) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn login_form(uri: Uri, headers: HeaderMap, Query(q): Query<NextParam>) -> Response {
    let csrf = hex::encode(rand::random::<[u8; 16]>());
    let mut r = login_page(StatusCode::OK, &csrf, &safe_next(q.next.as_deref()), "", None);
    let secure = session::is_tls(&headers, uri.scheme_str());
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(LOGIN_CSRF_COOKIE, &csrf, 3600, secure, "/login"));
    r
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// An API token pasted instead (operators: the bootstrap token).
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// Logs in with a user name and password (exactly `POST /v1/login`), or with a pasted API token.
pub async fn login(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    SourceAddr(source): SourceAddr,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = safe_next(Some(&f.next));
    let cookie_csrf = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or("");
    if f.csrf.is_empty() || !session::constant_time_eq(f.csrf.as_bytes(), cookie_csrf.as_bytes()) {
        return WebError::new(
            StatusCode::FORBIDDEN,
            "the login form's security token (CSRF) is missing or stale; reload the login page and try again",
        )
        .into_response();
    }
    let retry = |status: StatusCode, msg: &str| login_page(status, &f.csrf, &next, &f.username, Some(msg));
    // For the audit log, as `POST /v1/login` records it (the user name, never the password).
    let note = |user_id| AuditNote {
        actor: format!("dashboard login as '{}'", f.username.chars().take(64).collect::<String>()),
        user_id,
    };
    if !f.token.trim().is_empty() {
        let token = f.token.trim().to_string();
        match kumo_control::context::resolve(&app, &token).await {
            Ok(actor) => {
                let mut r = login_cookie_response(&headers, &uri, &next, &token, false, 12 * 3600);
                r.extensions_mut().insert(actor);
                r
            }
            Err(e) => {
                let mut r = retry(e.status(), &e.message);
                r.extensions_mut().insert(AuditNote { actor: "dashboard login with a token".into(), user_id: None });
                r
            }
        }
    } else {
        let req = LoginRequest { username: f.username.clone(), password: f.password.clone() };
        match login::login(&app, &req, source).await {
            LoginOutcome::Ok(resp, user_id) => {
                let max_age = (resp.expires_at - chrono::Utc::now()).num_seconds().max(0);
                let mut r = login_cookie_response(&headers, &uri, &next, &resp.token, true, max_age);
                r.extensions_mut().insert(note(Some(user_id)));
                r
            }
            LoginOutcome::Err(e, _) => {
                let mut r = retry(e.status(), &e.message);
                r.extensions_mut().insert(e.code);
                r.extensions_mut().insert(note(None));
                r
            }
        }
    }
}

/// The redirect after a successful login, setting the session cookie and dropping the login one.
fn login_cookie_response(
    headers: &HeaderMap,
    uri: &Uri,
    next: &str,
    token: &str,
    issued: bool,
    max_age: i64,
) -> Response {
    let secure = session::is_tls(headers, uri.scheme_str());
    let mut r = Redirect::to(next).into_response();
    let value = session::session_cookie_value(token, issued);
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, &value, max_age, secure, "/"));
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(LOGIN_CSRF_COOKIE, "", 0, secure, "/login"));
    r
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

/// Logs out: revokes a session the dashboard issued, and forgets the cookie.
pub async fn logout(
    State(app): State<Arc<App>>,
    s: Session,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    s.checked_form(&headers, form)?;
    if s.issued {
        login::logout(&app, &s.token).await?;
    }
    let secure = session::is_tls(&headers, uri.scheme_str());
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().append(header::SET_COOKIE, session::set_cookie(SESSION_COOKIE, "", 0, secure, "/"));
    if session::is_htmx(&headers) {
        r.headers_mut().insert("hx-redirect", HeaderValue::from_static("/login"));
    }
    Ok(render::with_actor(r, &s))
}

/// The project picker.
pub async fn projects(State(app): State<Arc<App>>, s: Session) -> Result<Response, WebError> {
    let page_req = PageParams { limit: Some(1000), page_token: None, sort_by: None }
        .validate()
        .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e))?;
    let list = kumo_control::app::projects::list(&app, &s.ctx, &page_req).await?;
    page(&s, "projects.html", context! { projects => list.items, section => "projects" })
}

pub async fn project_home(Path(p): Path<String>) -> Redirect {
    Redirect::to(&format!("/projects/{}/instances", render::urlencode(&p)))
}

impl crate::session::CsrfField for CsrfForm {
    fn csrf_field(&self) -> &str {
        &self.csrf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/projects/a/instances")), "/projects/a/instances");
        assert_eq!(safe_next(Some("//evil.example/x")), "/projects");
        assert_eq!(safe_next(Some("https://evil.example/")), "/projects");
        assert_eq!(safe_next(Some("/\\evil.example")), "/projects");
        assert_eq!(safe_next(None), "/projects");
    }
}
