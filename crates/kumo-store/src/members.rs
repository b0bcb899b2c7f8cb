//! Project membership: which user has which role in which project.

use crate::{now, parse_ts, parse_uuid, ts, Conn, Result};
use kumo_types::{ProjectId, UserId};
use sqlx::Row;

/// A member of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: UserId,
    pub user_name: String,
    pub role: String,
    pub time_created: chrono::DateTime<chrono::Utc>,
}

/// The role of `user_id` in `project_id`, if a member.
pub async fn role(conn: &mut Conn, project_id: ProjectId, user_id: UserId) -> Result<Option<String>> {
    Ok(sqlx::query_scalar("SELECT role FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project_id.to_string())
        .bind(user_id.to_string())
        .fetch_optional(&mut *conn)
        .await?)
}

/// Adds a member or changes their role.
pub async fn put(conn: &mut Conn, project_id: ProjectId, user_id: UserId, role: &str) -> Result<()> {
    let updated = sqlx::query("UPDATE project_members SET role = $1 WHERE project_id = $2 AND user_id = $3")
        .bind(role)
        .bind(project_id.to_string())
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    if updated.rows_affected() == 0 {
        sqlx::query("INSERT INTO project_members (project_id, user_id, role, time_created) VALUES ($1, $2, $3, $4)")
            .bind(project_id.to_string())
            .bind(user_id.to_string())
            .bind(role)
            .bind(ts(now()))
            .execute(&mut *conn)
            .await
            .map_err(crate::map_unique)?;
    }
    Ok(())
}

pub async fn remove(conn: &mut Conn, project_id: ProjectId, user_id: UserId) -> Result<bool> {
    let r = sqlx::query("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2")
        .bind(project_id.to_string())
        .bind(user_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Members of a project, by user name.
pub async fn list(conn: &mut Conn, project_id: ProjectId) -> Result<Vec<Member>> {
    let rows = sqlx::query(
        "SELECT m.user_id, u.name, m.role, m.time_created FROM project_members m JOIN users u ON u.id = m.user_id \
         WHERE m.project_id = $1 AND u.time_deleted IS NULL ORDER BY u.name",
    )
    .bind(project_id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Member {
                user_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                user_name: r.try_get(1)?,
                role: r.try_get(2)?,
                time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            })
        })
        .collect()
}

/// Ids of the projects a user is a member of.
pub async fn projects_of(conn: &mut Conn, user_id: UserId) -> Result<Vec<ProjectId>> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT project_id FROM project_members WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    ids.iter().map(|s| parse_uuid(s)).collect()
}

/// Every project a user is a member of, with the role.
pub async fn roles_of(conn: &mut Conn, user_id: UserId) -> Result<Vec<(ProjectId, String)>> {
    let rows = sqlx::query("SELECT project_id, role FROM project_members WHERE user_id = $1")
        .bind(user_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| Ok((parse_uuid(&r.try_get::<String, _>(0)?)?, r.try_get(1)?))).collect()
}
