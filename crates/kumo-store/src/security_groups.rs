//! Security groups, their rules (replaced as a whole) and which instances they apply to.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::network::{RuleDirection, RuleProtocol};
use kumo_types::page::PageRequest;
use kumo_types::{InstanceId, NameOrId, ProjectId, ResultsPage, SecurityGroupId, SecurityGroupView, SecurityRule};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "g.id, g.name, g.description, g.time_created, g.time_modified, p.name, \
    (SELECT COUNT(*) FROM security_group_rules r WHERE r.group_id = g.id), g.project_id";
const FROM: &str = "FROM security_groups g JOIN projects p ON p.id = g.project_id";

#[derive(Debug, Clone)]
pub struct GroupRecord {
    pub view: SecurityGroupView,
    pub project_id: ProjectId,
}

impl page::Keyed for GroupRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &AnyRow) -> Result<GroupRecord> {
    Ok(GroupRecord {
        view: SecurityGroupView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            rule_count: r.try_get(6)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(7)?)?,
    })
}

pub async fn insert(conn: &mut Conn, project_id: ProjectId, name: &str, description: &str) -> Result<GroupRecord> {
    let id: SecurityGroupId = new_id();
    sqlx::query(
        "INSERT INTO security_groups (id, project_id, name, description, time_created, time_modified) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id.to_string())
    .bind(project_id.to_string())
    .bind(name)
    .bind(description)
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, project_id, &NameOrId::Id(id.get())).await?.ok_or_else(|| StoreError::Corrupt("group vanished".into()))
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<GroupRecord>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(GroupRecord: COLS FROM "g", Parent("project_id") => ProjectId, from_row);

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<GroupRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE g.project_id = $1 AND g.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "g", req, from_row).await
}

/// Live instances the group applies to.
pub async fn count_members(conn: &mut Conn, group_id: SecurityGroupId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM instance_security_groups m JOIN instances i ON i.id = m.instance_id \
         WHERE m.group_id = $1 AND i.time_deleted IS NULL",
    )
    .bind(group_id.to_string())
    .fetch_one(&mut *conn)
    .await?)
}

/// Names of other groups whose rules name this one as their source.
pub async fn referenced_by(conn: &mut Conn, group_id: SecurityGroupId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT g.name FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id \
         WHERE r.source_group_id = $1 AND r.group_id <> $1 AND g.time_deleted IS NULL ORDER BY g.name",
    )
    .bind(group_id.to_string())
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn soft_delete(conn: &mut Conn, group_id: SecurityGroupId) -> Result<bool> {
    sqlx::query("DELETE FROM security_group_rules WHERE group_id = $1")
        .bind(group_id.to_string())
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query(
        "UPDATE security_groups SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(group_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// A stored rule: ports, and the source as a CIDR or a group id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    pub direction: RuleDirection,
    pub protocol: RuleProtocol,
    pub ports: Option<(u16, u16)>,
    pub source_cidr: Option<String>,
    pub source_group: Option<(SecurityGroupId, String)>,
}

impl StoredRule {
    pub fn to_wire(&self) -> SecurityRule {
        SecurityRule {
            direction: self.direction,
            protocol: self.protocol,
            port_range: self.ports.map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }),
            source: match (&self.source_cidr, &self.source_group) {
                (Some(c), _) => c.clone(),
                (None, Some((_, name))) => name.clone(),
                (None, None) => "0.0.0.0/0".into(),
            },
        }
    }
}

/// Replaces every rule of the group (call inside a transaction).
pub async fn replace_rules(conn: &mut Conn, group_id: SecurityGroupId, rules: &[StoredRule]) -> Result<()> {
    sqlx::query("DELETE FROM security_group_rules WHERE group_id = $1")
        .bind(group_id.to_string())
        .execute(&mut *conn)
        .await?;
    // Multi-row INSERTs (100 rows, 800 parameters per statement): a 1,000-rule PUT is 10 round
    // trips, not 1,000.
    for (c, chunk) in rules.chunks(100).enumerate() {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| {
                let b = i * 8;
                format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO security_group_rules (group_id, position, direction, protocol, port_from, port_to, \
             source_cidr, source_group_id) VALUES {}",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (i, r) in chunk.iter().enumerate() {
            q = q
                .bind(group_id.to_string())
                .bind((c * 100 + i) as i64)
                .bind(r.direction.as_str())
                .bind(r.protocol.as_str())
                .bind(r.ports.map(|p| p.0 as i64))
                .bind(r.ports.map(|p| p.1 as i64))
                .bind(r.source_cidr.clone())
                .bind(r.source_group.as_ref().map(|g| g.0.to_string()));
        }
        q.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE security_groups SET time_modified = $1 WHERE id = $2")
        .bind(ts(now()))
        .bind(group_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The rules of the given groups (None: of every live group), with their group's id.
pub async fn rules(conn: &mut Conn, group_id: Option<SecurityGroupId>) -> Result<Vec<(SecurityGroupId, StoredRule)>> {
    let (pred, val) = match group_id {
        Some(g) => ("r.group_id = $1", g.to_string()),
        None => ("$1 = ''", String::new()),
    };
    let sql = format!(
        "SELECT r.group_id, r.direction, r.protocol, r.port_from, r.port_to, r.source_cidr, r.source_group_id, \
         sg.name FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id \
         LEFT JOIN security_groups sg ON sg.id = r.source_group_id \
         WHERE {pred} AND g.time_deleted IS NULL ORDER BY r.group_id, r.position"
    );
    let rows = sqlx::query(&sql).bind(val).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            let d: String = r.try_get(1)?;
            let p: String = r.try_get(2)?;
            let from: Option<i64> = r.try_get(3)?;
            let to: Option<i64> = r.try_get(4)?;
            let sg: Option<String> = r.try_get(6)?;
            Ok((
                parse_uuid(&r.try_get::<String, _>(0)?)?,
                StoredRule {
                    direction: RuleDirection::parse(&d)
                        .ok_or_else(|| StoreError::Corrupt(format!("rule direction '{d}'")))?,
                    protocol: RuleProtocol::parse(&p)
                        .ok_or_else(|| StoreError::Corrupt(format!("rule protocol '{p}'")))?,
                    ports: from.zip(to).map(|(a, b)| (a as u16, b as u16)),
                    source_cidr: r.try_get(5)?,
                    source_group: match sg {
                        Some(id) => Some((parse_uuid(&id)?, r.try_get::<Option<String>, _>(7)?.unwrap_or_default())),
                        None => None,
                    },
                },
            ))
        })
        .collect()
}

pub async fn set_instance_groups(conn: &mut Conn, instance_id: InstanceId, groups: &[SecurityGroupId]) -> Result<()> {
    for g in groups {
        sqlx::query("INSERT INTO instance_security_groups (instance_id, group_id) VALUES ($1, $2)")
            .bind(instance_id.to_string())
            .bind(g.to_string())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// (instance id, group id) of every live instance.
pub async fn memberships(conn: &mut Conn) -> Result<Vec<(InstanceId, SecurityGroupId)>> {
    let rows = sqlx::query(
        "SELECT m.instance_id, m.group_id FROM instance_security_groups m JOIN instances i ON i.id = m.instance_id \
         WHERE i.time_deleted IS NULL",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| Ok((parse_uuid(&r.try_get::<String, _>(0)?)?, parse_uuid(&r.try_get::<String, _>(1)?)?)))
        .collect()
}
