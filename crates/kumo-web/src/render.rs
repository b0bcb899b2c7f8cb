//! Rendering: the template environment (templates embedded in the binary), the filters pages
//! use, and [`WebError`], which shows the API's error message as a page or, for htmx requests,
//! as a fragment.

use crate::session::Session;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use kumo_control::error::{current_request_id, ApiError};
use minijinja::{context, Environment, Value};
use std::sync::OnceLock;

/// Every template, embedded at build time.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("error.html", include_str!("../templates/error.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("projects.html", include_str!("../templates/projects.html")),
    ("instances.html", include_str!("../templates/instances.html")),
    ("instance_rows.html", include_str!("../templates/instance_rows.html")),
    ("instance_new.html", include_str!("../templates/instance_new.html")),
    ("instance.html", include_str!("../templates/instance.html")),
    ("instance_state.html", include_str!("../templates/instance_state.html")),
    ("console_chunk.html", include_str!("../templates/console_chunk.html")),
    ("images.html", include_str!("../templates/images.html")),
    ("billing.html", include_str!("../templates/billing.html")),
    ("hosts.html", include_str!("../templates/hosts.html")),
    ("op_projects.html", include_str!("../templates/op_projects.html")),
    ("audit.html", include_str!("../templates/audit.html")),
    ("volumes.html", include_str!("../templates/volumes.html")),
    ("volume_rows.html", include_str!("../templates/volume_rows.html")),
    ("network.html", include_str!("../templates/network.html")),
    ("buckets.html", include_str!("../templates/buckets.html")),
    ("bucket.html", include_str!("../templates/bucket.html")),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, src) in TEMPLATES {
            if let Err(e) = env.add_template(name, src) {
                // A broken template is a bug caught by the unit test below; keep serving the rest.
                tracing::error!("dashboard template {name}: {e}");
            }
        }
        env.add_filter("money", money);
        env.add_filter("bytes", bytes);
        env.add_filter("dt", datetime);
        env.add_filter("pct", pct);
        env
    })
}

/// Integer minor units (cents) as a decimal amount: 1234 → "12.34".
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// An RFC 3339 time as `2026-11-27 10:00:00` (UTC); anything else unchanged.
fn datetime(s: String) -> String {
    match chrono::DateTime::parse_from_rfc3339(&s) {
        Ok(t) => t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => s,
    }
}

/// `used` as a whole percentage of `total` (0–100; 0 when total is 0 or absent).
fn pct(used: i64, total: Option<i64>) -> i64 {
    match total {
        Some(t) if t > 0 => (used.saturating_mul(100) / t).clamp(0, 100),
        _ => 0,
    }
}

/// Percent-encodes a path: everything but unreserved characters and `/`.
pub fn urlencode(s: &str) -> String {
    percent_encode(s, true)
}

/// Percent-encodes one path segment or query value (an object key): `/` is encoded too.
pub fn urlencode_component(s: &str) -> String {
    percent_encode(s, false)
}

fn percent_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Renders a template to a string.
pub fn render_string(template: &str, ctx: Value) -> Result<String, WebError> {
    let t = env().get_template(template).map_err(|e| WebError::internal(format!("template {template}: {e}")))?;
    t.render(ctx).map_err(|e| WebError::internal(format!("template {template}: {e:#}")))
}

/// Renders a template (a page or a fragment) with the caller and their CSRF token.
pub fn page(s: &Session, template: &str, ctx: Value) -> Result<Response, WebError> {
    let me = context! {
        name => s.actor().user.as_ref().map_or("operator", |u| u.name.as_str()),
        operator => s.actor().operator,
    };
    let html = render_string(template, context! { me => me, csrf => s.csrf, ..ctx })?;
    Ok(with_actor(Html(html).into_response(), s))
}

/// Puts the caller on the response, for the audit log (which records dashboard POSTs too).
pub fn with_actor(mut r: Response, s: &Session) -> Response {
    r.extensions_mut().insert(s.actor().clone());
    r
}

tokio::task_local! {
    /// Whether the request being served came from htmx (errors are then fragments).
    pub static HTMX: bool;
}

/// An error shown to the user: the API's message (and request id), with the API's status code.
#[derive(Debug)]
pub struct WebError {
    pub status: StatusCode,
    pub message: String,
    pub code: Option<kumo_types::ErrorCode>,
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError { status, message: message.into(), code: None }
    }
    pub fn internal(detail: impl std::fmt::Display) -> WebError {
        WebError::from(ApiError::internal(detail))
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> WebError {
        if let Some(internal) = &e.internal {
            tracing::error!(request_id = %current_request_id(), code = %e.code, "{}: {internal}", e.message);
        }
        WebError { status: e.status(), message: e.message, code: Some(e.code) }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let fragment = HTMX.try_with(|h| *h).unwrap_or(false);
        let ctx = context! {
            status => self.status.as_u16(),
            reason => self.status.canonical_reason().unwrap_or(""),
            message => self.message,
            request_id => current_request_id(),
            fragment => fragment,
        };
        let html = render_string("error.html", ctx).unwrap_or_else(|e| e.message);
        let mut r = (self.status, Html(html)).into_response();
        if let Some(code) = self.code {
            // For the audit log's result column, as the API's errors do.
            r.extensions_mut().insert(code);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "template {name} does not parse");
        }
    }

    #[test]
    fn filters_format_as_documented() {
        assert_eq!(money(1234), "12.34");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-150), "-1.50");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
        assert_eq!(pct(5, Some(10)), 50);
        assert_eq!(pct(15, Some(10)), 100);
        assert_eq!(pct(5, None), 0);
        assert_eq!(datetime("2026-11-27T10:00:00.5Z".into()), "2026-11-27 10:00:00");
        assert_eq!(urlencode("/projects/a b?x=1"), "/projects/a%20b%3Fx%3D1");
        assert_eq!(urlencode_component("a/b+c ü"), "a%2Fb%2Bc%20%C3%BC");
    }
}

#[cfg(test)]
mod bench {
    use super::*;

    /// Benchmark (not a timed test): the template alone rendering 1,000 instances.
    /// `cargo test --release -p kumo-web -- --ignored --nocapture render_1000`
    #[test]
    #[ignore]
    fn render_1000_instances() {
        let instances: Vec<serde_json::Value> = (0..1000)
            .map(|n| {
                serde_json::json!({
                    "id": format!("01a21e47-a350-731b-b086-{n:012}"), "name": format!("vm-{n:04}"),
                    "description": "", "project": "bench", "state": "running", "state_reason": null,
                    "image": "fixture", "instance_type": "k1-nano", "vcpus": 1, "memory_mib": 128,
                    "disk_gib": 1, "host": null, "time_created": "2026-11-27T10:00:00Z",
                    "time_modified": "2026-11-27T10:00:00Z",
                })
            })
            .collect();
        let ctx = context! {
            project => context! { name => "bench" }, instances => instances, section => "instances",
            me => context! { name => "alice", operator => false }, csrf => "x",
        };
        let mut times = Vec::new();
        for _ in 0..50 {
            let t = std::time::Instant::now();
            let html = render_string("instances.html", ctx.clone()).expect("render");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(html.matches("data-name=\"vm-").count(), 1000);
        }
        times.sort_by(f64::total_cmp);
        eprintln!("instances.html with 1000 instances: median {:.2} ms, min {:.2} ms", times[25], times[0]);
    }
}
