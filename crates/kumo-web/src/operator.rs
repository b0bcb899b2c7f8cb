//! Operator pages: hosts with capacity bars, every project with its quotas and utilisation, and
//! the audit log. The app layer refuses tenants (403), as the API does.

use crate::instances::page_of;
use crate::render::{page, WebError};
use crate::session::Session;
use axum::extract::{Query, State};
use axum::response::Response;
use kumo_control::app::{audit, hosts, quotas};
use kumo_control::App;
use minijinja::context;
use serde::Deserialize;
use std::sync::Arc;

pub async fn hosts(State(app): State<Arc<App>>, s: Session) -> Result<Response, WebError> {
    let list = hosts::list(&app, &s.ctx, &page_of(1000, None)?).await?;
    page(&s, "hosts.html", context! { hosts => list.items, section => "hosts" })
}

pub async fn projects(State(app): State<Arc<App>>, s: Session) -> Result<Response, WebError> {
    let list = quotas::list(&app, &s.ctx).await?;
    page(&s, "op_projects.html", context! { quotas => list.items, section => "op_projects" })
}

#[derive(Deserialize, Default)]
pub struct AuditForm {
    since: Option<String>,
    user: Option<String>,
    project: Option<String>,
    operation: Option<String>,
    page_token: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

pub async fn audit(State(app): State<Arc<App>>, s: Session, Query(f): Query<AuditForm>) -> Result<Response, WebError> {
    let since = non_empty(f.since).unwrap_or_else(|| "24h".to_string());
    let q = audit::AuditQuery {
        since: Some(since.clone()),
        until: None,
        user: non_empty(f.user),
        project: non_empty(f.project),
        operation: non_empty(f.operation),
    };
    let list = audit::list(&app, &s.ctx, &q, &page_of(200, non_empty(f.page_token))?).await?;
    page(
        &s,
        "audit.html",
        context! {
            entries => list.items, next_page => list.next_page, section => "audit",
            since => since, user => q.user, project_filter => q.project, operation => q.operation,
        },
    )
}
