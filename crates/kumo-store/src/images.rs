//! Images. Public images have no project; project images are visible only inside their project.
//! A name is looked up in the project first, then among public images.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{ImageBoot, ImageFacts, ImageId, ImageView, NameOrId, ProjectId, ResultsPage};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "i.id, i.name, i.description, i.time_created, i.time_modified, p.name, i.os, i.boot, \
    i.size_bytes, i.project_id, i.disk_path, i.kernel_path, i.initrd_path, i.cmdline, i.os_family, i.os_version, \
    i.default_user, i.min_memory_mib, i.min_disk_gib";
const FROM: &str = "FROM images i LEFT JOIN projects p ON p.id = i.project_id";

/// An image with where its files are.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub view: ImageView,
    pub project_id: Option<ProjectId>,
    pub disk_path: String,
    pub kernel_path: Option<String>,
    pub initrd_path: Option<String>,
    pub cmdline: Option<String>,
}

fn from_row(r: &AnyRow) -> Result<ImageRecord> {
    let boot: String = r.try_get(7)?;
    Ok(ImageRecord {
        view: ImageView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            os: r.try_get(6)?,
            boot: ImageBoot::parse(&boot).ok_or_else(|| StoreError::Corrupt(format!("image boot '{boot}'")))?,
            size_bytes: r.try_get(8)?,
            os_facts: ImageFacts {
                os_family: r.try_get(14)?,
                os_version: r.try_get(15)?,
                default_user: r.try_get(16)?,
                min_memory_mib: r.try_get(17)?,
                min_disk_gib: r.try_get(18)?,
            },
        },
        project_id: r.try_get::<Option<String>, _>(9)?.map(|s| parse_uuid(&s)).transpose()?,
        disk_path: r.try_get(10)?,
        kernel_path: r.try_get(11)?,
        initrd_path: r.try_get(12)?,
        cmdline: r.try_get(13)?,
    })
}

fn view_from_row(r: &AnyRow) -> Result<ImageView> {
    from_row(r).map(|rec| rec.view)
}

/// An image to register.
#[derive(Debug, Clone)]
pub struct NewImage<'a> {
    pub id: ImageId,
    pub project_id: Option<ProjectId>,
    pub name: &'a str,
    pub description: &'a str,
    pub os: &'a str,
    pub boot: ImageBoot,
    pub disk_path: &'a str,
    pub kernel_path: Option<&'a str>,
    pub initrd_path: Option<&'a str>,
    pub cmdline: Option<&'a str>,
    pub size_bytes: i64,
    pub facts: ImageFacts,
}

/// A fresh id for an image whose files are being prepared before it is inserted.
pub fn allocate_id() -> ImageId {
    new_id()
}

pub async fn insert(conn: &mut Conn, n: &NewImage<'_>) -> Result<ImageRecord> {
    let t = ts(now());
    sqlx::query(
        "INSERT INTO images (id, project_id, name, description, time_created, time_modified, os, boot, disk_path, \
         kernel_path, initrd_path, cmdline, size_bytes, os_family, os_version, default_user, min_memory_mib, \
         min_disk_gib) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(n.id.to_string())
    .bind(n.project_id.map(|p| p.to_string()))
    .bind(n.name)
    .bind(n.description)
    .bind(&t)
    .bind(n.os)
    .bind(n.boot.as_str())
    .bind(n.disk_path)
    .bind(n.kernel_path)
    .bind(n.initrd_path)
    .bind(n.cmdline)
    .bind(n.size_bytes)
    .bind(n.facts.os_family.as_deref())
    .bind(n.facts.os_version.as_deref())
    .bind(n.facts.default_user.as_deref())
    .bind(n.facts.min_memory_mib)
    .bind(n.facts.min_disk_gib)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get_by_id(conn, n.id).await?.ok_or_else(|| StoreError::Corrupt("image vanished".into()))
}

/// By id, whoever owns it (internal use: the reconciler, deleted images included).
pub async fn get_by_id(conn: &mut Conn, id: ImageId) -> Result<Option<ImageRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE i.id = $1");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// Looks up an image visible from `project_id` (or only public images when `None`).
pub async fn get(conn: &mut Conn, project_id: Option<ProjectId>, sel: &NameOrId) -> Result<Option<ImageRecord>> {
    lookup::get(conn, project_id, sel).await
}

// Project images sort before public ones, so a project's own image shadows a public one.
lookup::impl_lookup!(ImageRecord: COLS FROM "i", ParentOrPublic("project_id") => Option<ProjectId>, from_row);

/// Public images plus those of `project_id`.
pub async fn list(conn: &mut Conn, project_id: Option<ProjectId>, req: &PageRequest) -> Result<ResultsPage<ImageView>> {
    let sql =
        format!("SELECT {COLS} {FROM} WHERE i.time_deleted IS NULL AND (i.project_id IS NULL OR i.project_id = $1)");
    let project = project_id.map(|p| p.to_string()).unwrap_or_default();
    page::fetch(conn, &sql, &[project], "i", req, view_from_row).await
}

/// Live instances and volumes created from the image (their disks are backed by its file).
pub async fn count_users(conn: &mut Conn, image_id: ImageId) -> Result<i64> {
    let instances: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE image_id = $1 AND time_deleted IS NULL")
            .bind(image_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    Ok(instances + crate::volumes::count_from_source(conn, image_id.get()).await?)
}

/// Gives a live image another name (a public image superseded by a new build while in use).
pub async fn rename(conn: &mut Conn, image_id: ImageId, name: &str) -> Result<bool> {
    let r = sqlx::query("UPDATE images SET name = $1, time_modified = $2 WHERE id = $3 AND time_deleted IS NULL")
        .bind(name)
        .bind(ts(now()))
        .bind(image_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn soft_delete(conn: &mut Conn, image_id: ImageId) -> Result<bool> {
    let r =
        sqlx::query("UPDATE images SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
            .bind(ts(now()))
            .bind(image_id.to_string())
            .execute(&mut *conn)
            .await?;
    Ok(r.rows_affected() == 1)
}

/// Every live image's id and files (for the orphan sweep: image directories nothing names).
pub async fn live_files(conn: &mut Conn) -> Result<Vec<(ImageId, Vec<String>)>> {
    let rows = sqlx::query("SELECT id, disk_path, kernel_path, initrd_path FROM images WHERE time_deleted IS NULL")
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::new();
    for r in &rows {
        let mut files = vec![r.try_get::<String, _>(1)?];
        files.extend(r.try_get::<Option<String>, _>(2)?);
        files.extend(r.try_get::<Option<String>, _>(3)?);
        out.push((parse_uuid(&r.try_get::<String, _>(0)?)?, files));
    }
    Ok(out)
}
