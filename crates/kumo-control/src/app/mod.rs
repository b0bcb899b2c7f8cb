//! Business logic, one module per resource. Every operation starts with its one authorisation check
//! (`ctx.authorize(…)`, or `project(…)` which checks the caller's role in the project) and
//! does its reads and writes in one store transaction.

pub mod access_keys;
pub mod audit;
pub mod backups;
pub mod billing;
pub mod buckets;
pub mod events;
pub mod floating_ips;
pub mod hosts;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod join_tokens;
pub mod login;
pub mod me;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod migrations;
pub mod placement_groups;
pub mod projects;
pub mod quotas;
pub mod security_groups;
pub mod snapshots;
pub mod ssh_keys;
pub mod tokens;
pub mod users;
pub mod volumes;
pub mod vpcs;
pub mod zones;

use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use kumo_store::Conn;
use kumo_types::{NameOrId, ProjectView};

/// Parses a `{name-or-id}` selector; `kind` names the resource in the error.
pub fn selector(kind: &str, s: &str) -> ApiResult<NameOrId> {
    NameOrId::parse(s).map_err(|e| ApiError::invalid(format!("{kind}: {e}")))
}

/// Resolves the `project` query selector and checks the caller's access to it: the one
/// authorisation check of every project-scoped operation. A missing project, or one the caller is
/// not a member of, is 404.
pub async fn project(
    conn: &mut Conn,
    ctx: &OpContext,
    project: Option<&str>,
    access: Access,
) -> ApiResult<ProjectView> {
    let p =
        project.ok_or_else(|| ApiError::invalid("the 'project' query parameter is required (e.g. ?project=demo)"))?;
    let sel = selector("project", p)?;
    let view = kumo_store::projects::get(conn, &sel).await?.ok_or_else(|| ApiError::not_found("project", p))?;
    ctx.authorize_project(view.id, &view.name, access).map_err(|e| not_a_member(e, p))?;
    Ok(view)
}

/// A non-member's 404 names the project as they asked for it: given an id, they must not learn
/// the project's name.
pub(crate) fn not_a_member(e: ApiError, asked: &str) -> ApiError {
    if e.code == kumo_types::ErrorCode::NotFound {
        ApiError::not_found("project", asked)
    } else {
        e
    }
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
