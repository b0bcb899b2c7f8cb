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
            fn key_id(&self) -> uuid::Uuid { self.id }
        }
    )*};
}
keyed!(
    kumo_types::ProjectView,
    kumo_types::InstanceTypeView,
    kumo_types::ImageView,
    kumo_types::InstanceView,
    kumo_types::HostView
);

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
    let (col, op, dir) = match req.sort_by {
        SortBy::NameAscending => ("name", ">", "ASC"),
        SortBy::NameDescending => ("name", "<", "DESC"),
        SortBy::IdAscending => ("id", ">", "ASC"),
    };
    let mut sql = select_where.to_string();
    if req.after.is_some() {
        sql.push_str(&format!(" AND {alias}.{col} {op} ${}", binds.len() + 1));
    }
    sql.push_str(&format!(" ORDER BY {alias}.{col} {dir} LIMIT {}", req.limit as i64 + 1));
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b.clone());
    }
    if let Some(after) = &req.after {
        q = q.bind(after.clone());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
    let more = items.len() > req.limit as usize;
    items.truncate(req.limit as usize);
    let next_page = if more {
        items.last().map(|last| {
            let key = match req.sort_by {
                SortBy::IdAscending => last.key_id().to_string(),
                _ => last.key_name().to_string(),
            };
            PageToken { sort_by: req.sort_by, last: key }.encode()
        })
    } else {
        None
    };
    Ok(ResultsPage { items, next_page })
}
