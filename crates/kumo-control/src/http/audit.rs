//! The audit log: the middleware that records every mutating request, and
//! `GET /v1/system/audit-log` to read it.
//!
//! The middleware wraps every route (outside authentication), so requests that authentication
//! refuses are recorded too. It learns the caller from the [`Actor`] that authentication leaves
//! in the response's extensions (or an [`AuditNote`] from login), the result from the
//! [`ErrorCode`] the error response carries, and the operation id from the matched route
//! template, mapped through the OpenAPI document once at startup.

use super::{page, ApiQuery};
use crate::app::audit::{self, AuditQuery};
use crate::context::{Actor, OpContext};
use crate::error::{current_request_id, ApiResult};
use crate::App;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::Json;
use kumo_store::audit::NewAuditEntry;
use kumo_types::{AuditEntryView, ErrorBody, ErrorCode, NameOrId, PageParams, ProjectId, ResultsPage, UserId};
use serde::Deserialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use utoipa::IntoParams;

/// Who made a request that carried no token (login), for the audit log.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub actor: String,
    pub user_id: Option<UserId>,
}

/// The client's address: behind a trusted proxy the forwarded client (see
/// [`super::forwarded`]), else the peer's (None when the server was not started with connect
/// info, e.g. in tests that drive the router directly).
pub struct SourceAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for SourceAddr {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let resolved = parts.extensions.get::<super::forwarded::ClientAddr>().map(|c| c.0);
        Ok(SourceAddr(resolved.or_else(|| parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()))))
    }
}

/// (method, route template) → operation id, from the OpenAPI document.
#[derive(Debug, Default)]
pub struct Operations(HashMap<(String, String), String>);

impl Operations {
    pub fn from_document(doc: &utoipa::openapi::OpenApi) -> Operations {
        let json = serde_json::to_value(doc).unwrap_or_default();
        let mut map = HashMap::new();
        for (path, item) in json["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if let Some(id) = op["operationId"].as_str() {
                    map.insert((method.to_uppercase(), path.clone()), id.to_string());
                }
            }
        }
        for (method, path, id) in super::membership::AUDITED {
            map.insert((method.to_string(), path.to_string()), id.to_string());
        }
        Operations(map)
    }

    pub fn get(&self, method: &str, template: &str) -> Option<&str> {
        self.0.get(&(method.to_string(), template.to_string())).map(String::as_str)
    }
}

/// The project a request is about: the `project` query parameter or `/v1/projects/{project}…`
/// (or the dashboard's `/projects/{project}…`).
pub fn project_of(path: &str, query: Option<&str>) -> Option<String> {
    let from_query = query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == "project" && !v.is_empty()).then(|| v.to_string())
    });
    from_query.or_else(|| {
        let rest = path.strip_prefix("/v1/projects/").or_else(|| path.strip_prefix("/projects/"))?;
        let p = rest.split('/').next()?;
        (!p.is_empty()).then(|| p.to_string())
    })
}

/// Middleware: records every POST, PUT, PATCH and DELETE with its outcome.
pub async fn record(
    State((app, ops)): State<(Arc<App>, Arc<Operations>)>,
    SourceAddr(source): SourceAddr,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    if !matches!(method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        return next.run(req).await;
    }
    let time = kumo_store::now();
    let path = req.uri().path().to_string();
    let project = project_of(&path, req.uri().query());
    let operation = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|m| ops.get(method.as_str(), m.as_str()))
        .unwrap_or("-")
        .to_string();
    let resp = next.run(req).await;
    // An agent renewing its lease (every few seconds, from every host) changes nothing anyone
    // acts on: only refused heartbeats are recorded.
    if path == super::membership::HEARTBEAT_PATH && resp.status().is_success() {
        return resp;
    }
    let (actor, user_id, token_id) = match (resp.extensions().get::<Actor>(), resp.extensions().get::<AuditNote>()) {
        (Some(a), _) => (a.describe(), a.user.as_ref().map(|u| u.id), Some(a.token_id)),
        (None, Some(n)) => (n.actor.clone(), n.user_id, None),
        (None, None) => ("anonymous".to_string(), None, None),
    };
    let status = resp.status().as_u16();
    let result = match resp.extensions().get::<ErrorCode>() {
        Some(code) => code.as_str().to_string(),
        None if status < 400 => "ok".to_string(),
        None => format!("http {status}"),
    };
    let entry = NewAuditEntry {
        time,
        request_id: current_request_id(),
        actor,
        user_id,
        token_id,
        source_address: source.map_or_else(|| "-".to_string(), |ip| ip.to_string()),
        method: method.to_string(),
        path,
        operation,
        project_id: None,
        status,
        result,
    };
    if let Err(e) = write(&app, entry, project).await {
        tracing::error!(request_id = %current_request_id(), "could not write the audit log: {e}");
    }
    resp
}

async fn write(app: &App, mut entry: NewAuditEntry, project: Option<String>) -> Result<(), kumo_store::StoreError> {
    if let Some(sel) = project.as_deref().and_then(|p| NameOrId::parse(p).ok()) {
        let mut conn = app.store.read().await?;
        // A deleted project (e.g. by this very request) is still named by its id in the path.
        entry.project_id = match kumo_store::projects::get(&mut conn, &sel).await? {
            Some(p) => Some(p.id),
            None => match sel {
                NameOrId::Id(id) => Some(ProjectId::from(id)),
                NameOrId::Name(_) => None,
            },
        };
    }
    let mut tx = app.store.begin().await?;
    kumo_store::audit::record(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Filters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilterParams {
    /// Only entries at or after this time: RFC 3339, or a duration back from now (`30m`, `1h`, `7d`).
    #[param(
        pattern = "^([0-9]{1,5}[smhd]|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
    )]
    pub since: Option<String>,
    /// Only entries before this time (same forms as `since`).
    #[param(
        pattern = "^([0-9]{1,5}[smhd]|[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9]))$"
    )]
    pub until: Option<String>,
    /// Only requests of this user (name or id).
    #[param(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub user: Option<String>,
    /// Only requests about this project (name or id). Project owners may read their project's entries.
    #[param(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub project: Option<String>,
    /// Only this operation id, e.g. `instance_create`.
    pub operation: Option<String>,
}

/// Read the audit log, oldest first (operators; owners for their project)
#[utoipa::path(get, path = "/v1/system/audit-log", tag = "system", operation_id = "audit_log_list",
    params(AuditFilterParams, PageParams),
    responses((status = 200, body = ResultsPage<AuditEntryView>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn audit_log_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(f): ApiQuery<AuditFilterParams>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<AuditEntryView>>> {
    let q = AuditQuery { since: f.since, until: f.until, user: f.user, project: f.project, operation: f.operation };
    Ok(Json(audit::list(&app, &ctx, &q, &page(&p)?).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_project_comes_from_the_query_or_the_path() {
        assert_eq!(project_of("/v1/instances", Some("project=a&x=1")).as_deref(), Some("a"));
        assert_eq!(project_of("/v1/projects/shop/members", None).as_deref(), Some("shop"));
        assert_eq!(project_of("/v1/projects/shop", Some("limit=3")).as_deref(), Some("shop"));
        assert_eq!(project_of("/v1/projects", None), None);
        assert_eq!(project_of("/v1/users", Some("project=")), None);
        assert_eq!(project_of("/projects/shop/instances/web1/stop", None).as_deref(), Some("shop"));
    }
}
