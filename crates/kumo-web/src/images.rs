//! Images: the list (public and the project's own) and import with a progress bar. The page's
//! script uploads the file with an XHR (so it can show upload progress) as the raw request body
//! to [`import`], which streams it into the app layer's image import, as `POST /v1/images/import`
//! does; the answer is the API's JSON (the new image, or the error body).

use crate::instances::{page_of, NAME_PATTERN, NAME_RULE};
use crate::render::{page, WebError};
use crate::session::Session;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kumo_control::app::{images, projects};
use kumo_control::App;
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

pub async fn list(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    let project = projects::view(&app, &s.ctx, &p).await?;
    let imgs = images::list(&app, &s.ctx, Some(&p), &page_of(1000, None)?).await?;
    page(
        &s,
        "images.html",
        context! {
            project => project, images => imgs.items, section => "images",
            name_pattern => NAME_PATTERN, name_rule => NAME_RULE,
            max_image_bytes => app.config.max_image_bytes,
        },
    )
}

#[derive(Deserialize)]
pub struct ImportQuery {
    name: String,
    #[serde(default)]
    description: String,
}

pub async fn import(
    State(app): State<Arc<App>>,
    s: Session,
    Path(p): Path<String>,
    Query(q): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The upload is a raw body: the CSRF token comes in the X-CSRF-Token header.
    if let Err(e) = s.check_csrf(&headers, None) {
        return e.into_response();
    }
    let result = images::import(
        &app,
        &s.ctx,
        Some(&p),
        &q.name,
        &q.description,
        // The dashboard's form asks for no OS facts yet (the CLI and the API take them).
        &kumo_types::ImageFacts::default(),
        body.into_data_stream(),
    )
    .await;
    let mut r = match result {
        Ok(view) => (StatusCode::CREATED, Json(view)).into_response(),
        Err(e) => e.into_response(),
    };
    r.extensions_mut().insert(s.actor().clone());
    r
}
