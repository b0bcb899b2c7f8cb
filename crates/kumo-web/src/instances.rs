//! Instance pages: the list with live state, the create form, the detail page (state and
//! actions, serial console, events, charts), and the actions themselves. Each handler calls the
//! app layer function the REST API's handler calls.

use crate::form::Fields;
use crate::render::{self, page, WebError};
use crate::session::{self, Session};
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use kumo_control::app::{
    events, images, instance_types, instances, projects, security_groups, ssh_keys, volumes, vpcs,
};
use kumo_control::App;
use kumo_types::page::PageRequest;
use kumo_types::{ErrorCode, InstanceAction, InstanceCreate, Name, PageParams, USER_DATA_MAX_BYTES};
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

/// The name rule of the API, as an HTML `pattern` (implicitly anchored; `\-` is valid in the
/// `v` flag mode browsers compile patterns with).
pub const NAME_PATTERN: &str = r"[a-z]([a-z0-9\-]{0,61}[a-z0-9])?";
pub const NAME_RULE: &str =
    "lowercase letters, digits and '-', starting with a letter, not ending with '-', at most 63 characters";

/// Longest serial console chunk read per request.
const CONSOLE_CHUNK: usize = 256 * 1024;

pub fn page_of(limit: u32, token: Option<String>) -> Result<PageRequest, WebError> {
    PageParams { limit: Some(limit), page_token: token, sort_by: None }
        .validate()
        .map_err(|e| WebError::new(StatusCode::BAD_REQUEST, e))
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    page_token: Option<String>,
}

async fn list_ctx(app: &App, s: &Session, p: &str, q: ListQuery) -> Result<minijinja::Value, WebError> {
    let project = projects::view(app, &s.ctx, p).await?;
    let list = instances::list(app, &s.ctx, Some(p), &page_of(1000, q.page_token)?).await?;
    Ok(context! {
        project => project, instances => list.items, next_page => list.next_page, section => "instances",
    })
}

pub async fn list(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let ctx = list_ctx(&app, &s, &p, q).await?;
    page(&s, "instances.html", ctx)
}

/// The project's live events (server-sent events) for this session: the pages refresh their
/// fragments when an event arrives, instead of polling.
pub async fn events(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let project_id = kumo_control::app::events::stream_project(&app, &s.ctx, Some(&p)).await?;
    let hash = kumo_control::context::hash_token(&s.token);
    Ok(kumo_control::http::events::project_event_stream(&app, hash, project_id).into_response())
}

/// The table body alone, refreshed on every live event of the project (and every 15 s as a fallback).
pub async fn rows(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    let ctx = list_ctx(&app, &s, &p, q).await?;
    page(&s, "instance_rows.html", ctx)
}

async fn form_ctx(app: &App, s: &Session, p: &str) -> Result<minijinja::Value, WebError> {
    let project = projects::view(app, &s.ctx, p).await?;
    let imgs = images::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let types = instance_types::list(app, &s.ctx, &page_of(1000, None)?).await?;
    // Preselect the smallest plan without GPUs (GPU plans need a host with a free GPU).
    let default_type = types
        .items
        .iter()
        .filter(|t| t.gpus == 0)
        .min_by_key(|t| (t.vcpus, t.memory_mib, t.disk_gib))
        .map(|t| t.name.clone());
    let vpc_list = vpcs::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let subnets = crate::network::subnets_of(app, s, p, &vpc_list.items).await?;
    let groups = security_groups::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let keys = ssh_keys::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    Ok(context! {
        project => project, images => imgs.items, types => types.items, section => "instances",
        default_type => default_type,
        vpcs => vpc_list.items, subnets => subnets, security_groups => groups.items, ssh_keys => keys.items,
        name_pattern => NAME_PATTERN, name_rule => NAME_RULE, user_data_max => USER_DATA_MAX_BYTES,
    })
}

pub async fn new_form(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let ctx = form_ctx(&app, &s, &p).await?;
    page(&s, "instance_new.html", ctx)
}

/// Where to go after a successful form: htmx follows `HX-Redirect`, plain forms a 303.
pub(crate) fn go(headers: &HeaderMap, to: &str) -> Response {
    if session::is_htmx(headers) {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            r.headers_mut().insert("hx-redirect", v);
        }
        r
    } else {
        Redirect::to(to).into_response()
    }
}

pub async fn create(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    // The API's own checks, so the message is the API's.
    let name = Name::parse(f.get("name")).map_err(|e| WebError::new(StatusCode::BAD_REQUEST, format!("name: {e}")))?;
    // No group ticked means the API's default (the project's `default` group), as when the
    // API's `security_groups` is omitted.
    let groups = f.all("security_groups");
    let body = InstanceCreate {
        name,
        description: f.get("description").to_string(),
        image: f.get("image").to_string(),
        instance_type: f.get("instance_type").to_string(),
        user_data: f.optional("user_data").map(|_| f.get("user_data").to_string()),
        root_size_gib: None,
        vpc: f.optional("vpc"),
        subnet: f.optional("subnet"),
        security_groups: (!groups.is_empty()).then_some(groups),
        ssh_keys: f.all("ssh_keys"),
        zone: f.optional("zone"),
        placement_group: f.optional("placement_group"),
    };
    let view = instances::create(&app, &s.ctx, Some(&p), &body).await?;
    let to = format!("/projects/{}/instances/{}", render::urlencode(&p), render::urlencode(&view.name));
    Ok(render::with_actor(go(&headers, &to), &s))
}

pub async fn detail(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    let view = instances::view(&app, &s.ctx, Some(&p), &i).await?;
    let types = instance_types::list(&app, &s.ctx, &page_of(1000, None)?).await?;
    let evs = events::list(&app, &s.ctx, Some(&p), Some(&view.id.to_string()), &page_of(1000, None)?).await?;
    let recent: Vec<_> = evs.items.into_iter().rev().take(50).collect();
    let (console, next) = console_bytes(&app, &s, &p, &i, 0).await;
    let disks = attached_volumes(&app, &s, &p, &view.name).await?;
    page(
        &s,
        "instance.html",
        context! {
            project => project, instance => view, types => types.items, events => recent, volumes => disks,
            console => console, console_next => next, section => "instances",
            metrics_available => true,
        },
    )
}

/// The state, facts and action buttons; polled every 2 s by the detail page.
pub async fn state(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i)): Path<(String, String)>,
) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    match instances::view(&app, &s.ctx, Some(&p), &i).await {
        Ok(view) => {
            let disks = attached_volumes(&app, &s, &p, &view.name).await?;
            page(
                &s,
                "instance_state.html",
                context! {
                    project => project, instance => view, types => instance_types_of(&app, &s).await?,
                    volumes => disks,
                },
            )
        }
        // Deleted meanwhile: say so and stop polling (a 200, so htmx swaps it in).
        Err(e) if e.code == ErrorCode::NotFound => {
            page(&s, "instance_state.html", context! { project => project, gone => i })
        }
        Err(e) => Err(e.into()),
    }
}

/// The project's volumes attached (or being attached or detached) to the instance `name`.
async fn attached_volumes(
    app: &App,
    s: &Session,
    p: &str,
    name: &str,
) -> Result<Vec<kumo_types::VolumeView>, WebError> {
    let all = volumes::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    Ok(all.items.into_iter().filter(|v| v.attached_to.as_deref() == Some(name)).collect())
}

/// The project's instances, for the attach selects of the volume and network pages.
pub async fn instance_names(app: &App, s: &Session, p: &str) -> Result<Vec<String>, WebError> {
    let list = instances::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    Ok(list.items.into_iter().map(|i| i.name).collect())
}

async fn instance_types_of(app: &App, s: &Session) -> Result<Vec<kumo_types::InstanceTypeView>, WebError> {
    Ok(instance_types::list(app, &s.ctx, &page_of(1000, None)?).await?.items)
}

/// Console text from `offset` (lossy UTF-8) and where to continue. Errors (the instance has no
/// console yet) read as empty: the console panel keeps polling.
async fn console_bytes(app: &App, s: &Session, p: &str, i: &str, offset: u64) -> (String, u64) {
    match instances::serial(app, &s.ctx, Some(p), i, offset, CONSOLE_CHUNK).await {
        // Trimmed output (an old offset) just continues from the oldest byte kept.
        Ok(c) => (String::from_utf8_lossy(&c.bytes).into_owned(), c.next),
        Err(_) => (String::new(), offset),
    }
}

#[derive(Deserialize)]
pub struct ConsoleQuery {
    #[serde(default)]
    offset: u64,
}

/// New console output: appended to the console by an out-of-band swap, and the next poller.
pub async fn console(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i)): Path<(String, String)>,
    Query(q): Query<ConsoleQuery>,
) -> Result<Response, WebError> {
    // Authorises (404 for another tenant's instance) before reading.
    instances::view(&app, &s.ctx, Some(&p), &i).await?;
    let (text, next) = console_bytes(&app, &s, &p, &i, q.offset).await;
    let url = format!("/projects/{}/instances/{}/console", render::urlencode(&p), render::urlencode(&i));
    let html = render::render_string(
        "console_chunk.html",
        context! { console_url => url, console => text, console_next => next },
    )?;
    Ok(render::with_actor(axum::response::Html(html).into_response(), &s))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

pub async fn act(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, WebError> {
    s.checked_form(&headers, form)?;
    let action = match action.as_str() {
        "start" => InstanceAction::Start,
        "stop" => InstanceAction::Stop,
        "reboot" => InstanceAction::Reboot,
        "delete" => InstanceAction::Delete,
        other => return Err(WebError::new(StatusCode::NOT_FOUND, format!("no instance action '{other}'"))),
    };
    instances::act(&app, &s.ctx, Some(&p), &i, action).await?;
    let pe = render::urlencode(&p);
    let to = if action == InstanceAction::Delete {
        format!("/projects/{pe}/instances")
    } else {
        format!("/projects/{pe}/instances/{}", render::urlencode(&i))
    };
    Ok(render::with_actor(go(&headers, &to), &s))
}

#[derive(Deserialize)]
pub struct ResizeForm {
    instance_type: String,
    #[serde(default, rename = "_csrf")]
    csrf: String,
}

pub async fn resize(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<ResizeForm>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    instances::resize(&app, &s.ctx, Some(&p), &i, &f.instance_type).await?;
    let to = format!("/projects/{}/instances/{}", render::urlencode(&p), render::urlencode(&i));
    Ok(render::with_actor(go(&headers, &to), &s))
}

impl crate::session::CsrfField for CsrfForm {
    fn csrf_field(&self) -> &str {
        &self.csrf
    }
}

impl crate::session::CsrfField for ResizeForm {
    fn csrf_field(&self) -> &str {
        &self.csrf
    }
}

#[derive(Deserialize)]
pub struct MetricsQuery {
    metric: String,
    /// `1h` (default) or `1d`: the window back from now.
    #[serde(default)]
    range: Option<String>,
}

/// One metric series for the charts (uPlot), as JSON: `kumo_control::app::metrics::query`, the
/// function behind `GET /v1/instances/{i}/metrics`. Errors are the API's error body.
pub async fn metrics(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, i)): Path<(String, String)>,
    Query(q): Query<MetricsQuery>,
) -> Response {
    let window = match q.range.as_deref().unwrap_or("1h") {
        "1d" => chrono::TimeDelta::days(1),
        _ => chrono::TimeDelta::hours(1),
    };
    let from = chrono::Utc::now() - window;
    let result = kumo_control::app::metrics::query(&app, &s.ctx, Some(&p), &i, &q.metric, Some(from), None).await;
    let r = match result {
        Ok(series) => axum::Json(series).into_response(),
        Err(e) => e.into_response(),
    };
    render::with_actor(r, &s)
}
