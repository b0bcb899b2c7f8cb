//! Keyset pagination shared by every list query.

use crate::{Conn, Result};
use kumo_types::page::{PageRequest, PageToken, SortBy};
use kumo_types::ResultsPage;
use sqlx::any::AnyRow;

/// What a listed item exposes for keyset pagination.
pub(crate) trait Keyed {
    fn key_name(&self) -> &str;
    fn key_id(&self) -> uuid::Uuid;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(
        impl Keyed for $t {
            fn key_name(&self) -> &str { &self.name }
            fn key_id(&self) -> uuid::Uuid { self.id.into() }
        }
    )*};
}
keyed!(
    kumo_types::ProjectView,
    kumo_types::InstanceTypeView,
    kumo_types::ImageView,
    kumo_types::InstanceView,
    kumo_types::HostView,
    kumo_types::UserView,
    kumo_types::SshKeyView,
    kumo_types::ZoneView,
    kumo_types::PlacementGroupView,
    kumo_types::AccessKeyView,
    kumo_types::BucketView
);

/// The SQL and binds of one keyset page of `select_where` (a `SELECT … WHERE …` whose
/// placeholders are `$1..$n` for `binds`) on table alias `alias`, sorted as `req` asks.
fn keyset_sql(select_where: &str, binds: &[String], alias: &str, req: &PageRequest) -> (String, Vec<String>) {
    let (col, op, dir) = match req.sort_by {
        SortBy::NameAscending => ("name", ">", "ASC"),
        SortBy::NameDescending => ("name", "<", "DESC"),
        SortBy::IdAscending => ("id", ">", "ASC"),
    };
    let by_name = req.sort_by != SortBy::IdAscending;
    // Names are not always unique in a listing (a project sees a public image and its own one of
    // the same name), so name orders break ties by id, and their key is "name/id" (names never
    // contain '/'). A key without an id (a token from before) continues after that name.
    let (after, after_id) = match &req.after {
        Some(a) if by_name => match a.split_once('/') {
            Some((name, id)) => (Some(name.to_string()), Some(id.to_string())),
            None => (Some(a.clone()), None),
        },
        other => (other.clone(), None),
    };
    let mut sql = select_where.to_string();
    let n = binds.len();
    match (&after, &after_id) {
        (Some(_), Some(_)) => sql.push_str(&format!(
            " AND ({alias}.{col} {op} ${k} OR ({alias}.{col} = ${k} AND {alias}.id {op} ${i}))",
            k = n + 1,
            i = n + 2
        )),
        (Some(_), None) => sql.push_str(&format!(" AND {alias}.{col} {op} ${}", n + 1)),
        _ => {}
    }
    if by_name {
        sql.push_str(&format!(" ORDER BY {alias}.{col} {dir}, {alias}.id {dir} LIMIT {}", req.limit as i64 + 1));
    } else {
        sql.push_str(&format!(" ORDER BY {alias}.{col} {dir} LIMIT {}", req.limit as i64 + 1));
    }
    let mut all = binds.to_vec();
    all.extend([after, after_id].into_iter().flatten());
    (sql, all)
}

/// Cuts the `limit + 1` rows of a keyset query to a page and its next-page token.
fn keyset_page<T: Keyed>(mut items: Vec<T>, req: &PageRequest) -> ResultsPage<T> {
    let more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    let next_page = if more {
        items.last().map(|last| {
            let key = match req.sort_by {
                SortBy::IdAscending => last.key_id().to_string(),
                _ => format!("{}/{}", last.key_name(), last.key_id()),
            };
            PageToken { sort_by: req.sort_by, last: key }.encode()
        })
    } else {
        None
    };
    ResultsPage { items, next_page }
}

/// Runs `select_where` (a `SELECT … WHERE …` whose placeholders are `$1..$n` for `binds`) as one
/// keyset page on table alias `alias`, sorted as `req` asks.
pub(crate) async fn fetch<T: Keyed>(
    conn: &mut Conn,
    select_where: &str,
    binds: &[String],
    alias: &str,
    req: &PageRequest,
    from_row: fn(&AnyRow) -> Result<T>,
) -> Result<ResultsPage<T>> {
    let (sql, binds) = keyset_sql(select_where, binds, alias, req);
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    Ok(keyset_page(items, req))
}

/// [`fetch`] on the typed read path (see [`crate::fast`]).
pub(crate) async fn fetch_fast<T: Keyed + Send + 'static>(
    reader: &crate::fast::Reader,
    select_where: &str,
    binds: &[String],
    alias: &str,
    req: &PageRequest,
    from_row: fn(&dyn crate::fast::Cols) -> Result<T>,
) -> Result<ResultsPage<T>> {
    let (sql, binds) = keyset_sql(select_where, binds, alias, req);
    let items = reader.all(&sql, &binds, from_row).await?;
    Ok(keyset_page(items, req))
}

/// Runs `select_where` (placeholders `$1..$n` for `binds`) as one page in id order — for
/// append-only logs (events, audit entries), whose ids are time-ordered. `id_col` names the id
/// column as the query sees it. The token echoes the sort the client asked for (ignored here), so
/// that a client repeating its query with `page_token` is not told its sort_by differs.
pub(crate) async fn fetch_by_id<T>(
    conn: &mut Conn,
    select_where: &str,
    mut binds: Vec<String>,
    id_col: &str,
    req: &PageRequest,
    from_row: fn(&AnyRow) -> Result<T>,
    id_of: fn(&T) -> uuid::Uuid,
) -> Result<ResultsPage<T>> {
    let mut sql = select_where.to_string();
    if let Some(after) = &req.after {
        binds.push(after.clone());
        sql.push_str(&format!(" AND {id_col} > ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY {id_col} ASC LIMIT {}", req.limit as i64 + 1));
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.clone());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    let next_page = if more {
        items.last().map(|e| PageToken { sort_by: req.sort_by, last: id_of(e).to_string() }.encode())
    } else {
        None
    };
    Ok(ResultsPage { items, next_page })
}
