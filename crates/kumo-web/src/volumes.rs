//! Block storage pages: volumes (live state; create, attach/detach, snapshot, backup, delete)
//! and the project's snapshots and backups. Each handler calls the app layer function the REST
//! API's handler calls, so authorisation, validation and messages are the API's.

use crate::form::Fields;
use crate::instances::{go, instance_names, page_of, NAME_PATTERN, NAME_RULE};
use crate::render::{self, page, WebError};
use crate::session::Session;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Form;
use kumo_control::app::{backups, images, projects, snapshots, volumes};
use kumo_control::App;
use kumo_types::{BackupCreate, Name, SnapshotCreate, VolumeCreate};
use minijinja::context;
use std::sync::Arc;

fn name_of(f: &Fields, field: &str) -> Result<Name, WebError> {
    Name::parse(f.get(field).trim()).map_err(|e| WebError::new(StatusCode::BAD_REQUEST, format!("{field}: {e}")))
}

async fn list_ctx(app: &App, s: &Session, p: &str) -> Result<minijinja::Value, WebError> {
    let project = projects::view(app, &s.ctx, p).await?;
    let vols = volumes::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let snaps = snapshots::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let backs = backups::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let imgs = images::list(app, &s.ctx, Some(p), &page_of(1000, None)?).await?;
    let insts = instance_names(app, s, p).await?;
    Ok(context! {
        project => project, volumes => vols.items, snapshots => snaps.items, backups => backs.items,
        images => imgs.items, instances => insts, section => "volumes",
        name_pattern => NAME_PATTERN, name_rule => NAME_RULE,
    })
}

pub async fn list(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let ctx = list_ctx(&app, &s, &p).await?;
    page(&s, "volumes.html", ctx)
}

/// The volume rows alone, refreshed on every live event of the project.
pub async fn rows(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let ctx = list_ctx(&app, &s, &p).await?;
    page(&s, "volume_rows.html", ctx)
}

fn back(p: &str) -> String {
    format!("/projects/{}/volumes", render::urlencode(p))
}

pub async fn create(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    let name = name_of(&f, "name")?;
    let size_gib = f
        .get("size_gib")
        .trim()
        .parse::<i64>()
        .map_err(|_| WebError::new(StatusCode::BAD_REQUEST, "size_gib: a whole number of GiB is required"))?;
    // One "source" select: `image:<name>` or `snapshot:<name>` (empty: a blank volume).
    let (mut source_image, mut source_snapshot) = (None, None);
    match f.get("source").split_once(':') {
        Some(("image", n)) => source_image = Some(n.to_string()),
        Some(("snapshot", n)) => source_snapshot = Some(n.to_string()),
        _ => {}
    }
    let body = VolumeCreate {
        name,
        description: f.get("description").to_string(),
        size_gib,
        encrypted: f.checked("encrypted"),
        source_image,
        source_snapshot,
        source_backup: None,
        iops_limit: None,
        bandwidth_limit_mib_s: None,
    };
    volumes::create(&app, &s.ctx, Some(&p), &body).await?;
    Ok(render::with_actor(go(&headers, &back(&p)), &s))
}

/// attach (field `instance`), detach, snapshot and backup (field `name`), delete.
pub async fn act(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, v, action)): Path<(String, String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    let f = s.checked_form(&headers, form)?;
    match action.as_str() {
        "attach" => {
            let instance = f.required("instance")?;
            volumes::attach(&app, &s.ctx, Some(&p), &v, &instance).await?;
        }
        "detach" => {
            volumes::detach(&app, &s.ctx, Some(&p), &v).await?;
        }
        "snapshot" => {
            let body = SnapshotCreate { name: name_of(&f, "name")?, description: String::new(), volume: v.clone() };
            snapshots::create(&app, &s.ctx, Some(&p), &body).await?;
        }
        "backup" => {
            let body = BackupCreate { name: name_of(&f, "name")?, description: String::new(), volume: v.clone() };
            backups::create(&app, &s.ctx, Some(&p), &body).await?;
        }
        "delete" => {
            volumes::delete(&app, &s.ctx, Some(&p), &v).await?;
        }
        other => return Err(WebError::new(StatusCode::NOT_FOUND, format!("no volume action '{other}'"))),
    }
    Ok(render::with_actor(go(&headers, &back(&p)), &s))
}

pub async fn delete_snapshot(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, n)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    s.checked_form(&headers, form)?;
    snapshots::delete(&app, &s.ctx, Some(&p), &n).await?;
    Ok(render::with_actor(go(&headers, &back(&p)), &s))
}

pub async fn delete_backup(
    State(app): State<Arc<App>>,
    s: Session,
    Path((p, n)): Path<(String, String)>,
    headers: HeaderMap,
    form: Result<Form<Fields>, FormRejection>,
) -> Result<Response, WebError> {
    s.checked_form(&headers, form)?;
    backups::delete(&app, &s.ctx, Some(&p), &n).await?;
    Ok(render::with_actor(go(&headers, &back(&p)), &s))
}
