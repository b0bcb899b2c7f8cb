//! The Kumo dashboard, served by `kumod` itself at `/`.
//!
//! Server-rendered HTML (minijinja templates embedded in the binary) with light progressive
//! enhancement: htmx for live fragments and forms, uPlot for charts, both vendored in
//! `assets/` and embedded too — no front-end build, no CDN, works offline. Every page is a thin
//! handler: it turns the session cookie into an `OpContext` ([`session`]), calls the same app
//! layer function the REST API calls, and renders the result; errors show the API's message.
//!
//! Where things are: [`session`] (login cookie, CSRF), [`render`] (templates, errors),
//! [`pages`] (login, project picker, assets), [`instances`], [`images`], [`billing`],
//! [`volumes`] (volumes, snapshots, backups), [`network`] (VPCs, subnets, security groups, SSH keys,
//! floating IPs), [`buckets`] (buckets and their objects, through [`kumo_s3::console`]),
//! [`form`] (forms with repeated fields),
//! [`operator`] (hosts, projects and quotas, audit log). See docs/dashboard.md.

pub mod billing;
pub mod buckets;
pub mod form;
pub mod images;
pub mod instances;
pub mod network;
pub mod operator;
pub mod pages;
pub mod render;
pub mod session;
pub mod volumes;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kumo_control::App;
use std::sync::Arc;

/// Marks htmx requests so errors render as fragments (see [`render::HTMX`]).
async fn htmx_marker(req: Request, next: Next) -> Response {
    let htmx = session::is_htmx(req.headers());
    render::HTMX.scope(htmx, next.run(req)).await
}

/// The dashboard's routes; `kumod` merges them into the API router
/// (`kumo_control::http::router_with`), so they share request ids and the audit log.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(pages::home))
        .route("/assets/{file}", get(pages::asset))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/projects", get(pages::projects))
        .route("/projects/{p}", get(pages::project_home))
        .route("/projects/{p}/events", get(instances::events))
        .route("/projects/{p}/instances", get(instances::list).post(instances::create))
        .route("/projects/{p}/instances/rows", get(instances::rows))
        .route("/projects/{p}/instances/new", get(instances::new_form))
        .route("/projects/{p}/instances/{i}", get(instances::detail))
        .route("/projects/{p}/instances/{i}/state", get(instances::state))
        .route("/projects/{p}/instances/{i}/console", get(instances::console))
        .route("/projects/{p}/instances/{i}/metrics.json", get(instances::metrics))
        .route("/projects/{p}/instances/{i}/resize", post(instances::resize))
        .route("/projects/{p}/instances/{i}/{action}", post(instances::act))
        .route("/projects/{p}/images", get(images::list))
        .route("/projects/{p}/images/import", post(images::import))
        .route("/projects/{p}/billing", get(billing::page))
        .route("/operator/hosts", get(operator::hosts))
        .route("/operator/projects", get(operator::projects))
        .route("/operator/audit", get(operator::audit))
        .route("/projects/{p}/volumes", get(volumes::list).post(volumes::create))
        .route("/projects/{p}/volumes/rows", get(volumes::rows))
        .route("/projects/{p}/volumes/{v}/{action}", post(volumes::act))
        .route("/projects/{p}/snapshots/{s}/delete", post(volumes::delete_snapshot))
        .route("/projects/{p}/backups/{b}/delete", post(volumes::delete_backup))
        .route("/projects/{p}/buckets", get(buckets::list).post(buckets::create))
        .route("/projects/{p}/buckets/{b}", get(buckets::browse))
        .route("/projects/{p}/buckets/{b}/upload", post(buckets::upload))
        .route("/projects/{p}/buckets/{b}/download", get(buckets::download))
        .route("/projects/{p}/buckets/{b}/{action}", post(buckets::act))
        .route("/projects/{p}/network", get(network::page_view))
        .route("/projects/{p}/network/{kind}", post(network::create))
        .route("/projects/{p}/network/{kind}/{name}/{action}", post(network::act))
        .route("/projects/{p}/network/vpcs/{v}/subnets/{s}/delete", post(network::subnet_delete))
        .layer(axum::middleware::from_fn(htmx_marker))
}
