//! Business logic, one module per resource. Every operation starts with `ctx.authorize(…)` and
//! does its reads and writes in one store transaction.

pub mod events;
pub mod hosts;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod projects;
pub mod tokens;

use crate::error::{ApiError, ApiResult};
use kumo_store::Conn;
use kumo_types::{NameOrId, ProjectView};

/// Parses a `{name-or-id}` selector; `kind` names the resource in the error.
pub fn selector(kind: &str, s: &str) -> ApiResult<NameOrId> {
    NameOrId::parse(s).map_err(|e| ApiError::invalid(format!("{kind}: {e}")))
}

/// Resolves the `project` query selector; a missing project is 404.
pub async fn project(conn: &mut Conn, project: Option<&str>) -> ApiResult<ProjectView> {
    let p =
        project.ok_or_else(|| ApiError::invalid("the 'project' query parameter is required (e.g. ?project=demo)"))?;
    let sel = selector("project", p)?;
    kumo_store::projects::get(conn, &sel).await?.ok_or_else(|| ApiError::not_found("project", p))
}

/// Acquires a pooled read connection.
pub async fn read(app: &crate::App) -> ApiResult<kumo_store::PoolConn> {
    Ok(app.store.read().await?)
}

/// Longest accepted description.
pub const DESCRIPTION_MAX: usize = 512;

pub fn check_description(d: &str) -> ApiResult<()> {
    if d.len() > DESCRIPTION_MAX {
        return Err(ApiError::invalid(format!("description is {} bytes long (at most {DESCRIPTION_MAX})", d.len())));
    }
    Ok(())
}
