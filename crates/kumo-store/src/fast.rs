//! The hot read path: typed drivers instead of sqlx's `Any`.
//!
//! The general store runs every query through `sqlx::Any`, which copies each row into an `AnyRow`
//! (one allocation and a type lookup per value) and, on SQLite, hands every query and its rows
//! across threads (sqlx-sqlite runs each connection on a worker thread). For the few reads that
//! dominate the API's load — an instance's view, a page of instances, a month's events for
//! usage — that overhead is most of the request. [`Reader`] runs such reads:
//!
//! - on **SQLite** through `rusqlite` (the same `libsqlite3-sys` as sqlx, so the same library), on
//!   a small pool of read-only connections to the same file, **on the calling thread**: no
//!   channel, no worker thread, and columns are decoded straight from the statement. WAL mode lets
//!   these readers run beside the writer and see every committed transaction; a read takes tens of
//!   microseconds to a few milliseconds (a month's events), so running it inline on a runtime
//!   worker costs less than the two thread hops it replaces.
//! - on **PostgreSQL** through a typed `sqlx::PgPool` (rows decoded from `PgRow` directly, no
//!   `AnyRow` copy).
//!
//! Queries are the same SQL text as the rest of the store (`$N` placeholders, TEXT ids and
//! timestamps), and rows are decoded once through [`Cols`], which `AnyRow`, `rusqlite::Row` and
//! `PgRow` all implement, so a decoder serves both paths.

use crate::{Result, StoreError};
use sqlx::Row as _;
use std::sync::{Arc, Mutex};

/// Column access by index, whichever driver produced the row.
pub(crate) trait Cols {
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn int(&self, i: usize) -> Result<i64>;
}

impl Cols for sqlx::any::AnyRow {
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
}

impl Cols for sqlx::postgres::PgRow {
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
}

fn lite(e: rusqlite::Error) -> StoreError {
    StoreError::Db(sqlx::Error::Protocol(format!("sqlite (read path): {e}")))
}

impl Cols for rusqlite::Row<'_> {
    fn text(&self, i: usize) -> Result<String> {
        self.get(i).map_err(lite)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        self.get(i).map_err(lite)
    }
    fn int(&self, i: usize) -> Result<i64> {
        self.get(i).map_err(lite)
    }
}

/// Idle read connections kept per SQLite database (more are opened under load, then dropped).
const SQLITE_IDLE: usize = 8;

pub(crate) struct SqliteReaders {
    path: String,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl SqliteReaders {
    fn open_one(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        let c = rusqlite::Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(lite)?;
        c.execute_batch("PRAGMA busy_timeout=10000; PRAGMA query_only=ON;").map_err(lite)?;
        c.set_prepared_statement_cache_capacity(64);
        Ok(c)
    }

    fn query<T>(&self, sql: &str, binds: &[String], decode: &mut dyn FnMut(&dyn Cols) -> Result<T>) -> Result<Vec<T>> {
        let popped = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match popped {
            Some(c) => c,
            None => self.open_one()?,
        };
        let out = run_sqlite(&conn, sql, binds, decode);
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < SQLITE_IDLE {
            idle.push(conn);
        }
        out
    }
}

fn run_sqlite<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    binds: &[String],
    decode: &mut dyn FnMut(&dyn Cols) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(lite)?;
    // `$N` binds binds[N-1], wherever and however often it appears (as sqlx-sqlite does).
    for i in 1..=stmt.parameter_count() {
        let n = stmt
            .parameter_name(i)
            .and_then(|name| name.strip_prefix('$'))
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(i);
        let v = binds
            .get(n - 1)
            .ok_or_else(|| StoreError::Corrupt(format!("query has parameter ${n} but {} binds", binds.len())))?;
        stmt.raw_bind_parameter(i, v.as_str()).map_err(lite)?;
    }
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(lite)? {
        out.push(decode(r)?);
    }
    Ok(out)
}

/// The typed read path of a [`crate::Store`].
#[derive(Clone)]
pub(crate) enum Reader {
    Sqlite(Arc<SqliteReaders>),
    Postgres(sqlx::PgPool),
}

impl Reader {
    /// Readers of the SQLite database at `url` (`sqlite://PATH[?…]` or `sqlite:PATH`).
    pub(crate) fn sqlite(url: &str) -> Result<Reader> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let path = rest.split('?').next().unwrap_or(rest).to_string();
        let r = SqliteReaders { path, idle: Mutex::new(Vec::new()) };
        // Fail early (and keep one connection ready).
        let first = r.open_one()?;
        r.idle.lock().unwrap_or_else(|e| e.into_inner()).push(first);
        Ok(Reader::Sqlite(Arc::new(r)))
    }

    pub(crate) async fn postgres(url: &str) -> Result<Reader> {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Reader::Postgres(pool))
    }

    /// Runs `sql` (placeholders `$1..$n` for `binds`) and decodes every row.
    pub(crate) async fn all<T: Send>(
        &self,
        sql: &str,
        binds: &[String],
        mut decode: impl FnMut(&dyn Cols) -> Result<T> + Send,
    ) -> Result<Vec<T>> {
        match self {
            Reader::Sqlite(r) => r.query(sql, binds, &mut decode),
            Reader::Postgres(pool) => {
                let mut q = sqlx::query(sql);
                for b in binds {
                    q = q.bind(b.as_str());
                }
                let rows = q.fetch_all(pool).await?;
                rows.iter().map(|r| decode(r)).collect()
            }
        }
    }

    /// The first row, if any.
    pub(crate) async fn one<T: Send>(
        &self,
        sql: &str,
        binds: &[String],
        decode: impl FnMut(&dyn Cols) -> Result<T> + Send,
    ) -> Result<Option<T>> {
        Ok(self.all(sql, binds, decode).await?.into_iter().next())
    }

    pub(crate) async fn close(&self) {
        match self {
            Reader::Sqlite(r) => r.idle.lock().unwrap_or_else(|e| e.into_inner()).clear(),
            Reader::Postgres(pool) => pool.close().await,
        }
    }
}
