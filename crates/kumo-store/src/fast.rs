//! The hot read path: typed drivers instead of sqlx's `Any`.
//!
//! The general store runs every query through `sqlx::Any`, which copies each row into an `AnyRow`
//! (one allocation and a type lookup per value) and, on SQLite, hands every query and its rows
//! across threads twice (sqlx-sqlite runs each connection on a worker thread of its own and
//! streams rows back one message at a time). For the few reads that dominate the API's load — an
//! instance's view, a page of instances, a month's events for usage — that overhead is most of the
//! request. [`Reader`] runs such reads:
//!
//! - on **SQLite** through `rusqlite` (the same `libsqlite3-sys` as sqlx, so the same library), on
//!   a small pool of dedicated reader threads, each owning one read-only connection to the same
//!   file, fed through a channel: one hop there and one back per read, the whole result decoded on
//!   the reader thread straight from the statement (no `AnyRow`). **No SQLite call runs on an
//!   async worker thread**: a read may wait on the disk or on SQLite's locks (`busy_timeout`), and
//!   the runtime has as many workers as cores (two here), so a blocking read there stalls every
//!   task behind it (the first version of this module read inline and made 50 concurrent instance
//!   creates take 62 s instead of 8). WAL mode lets these readers run beside the writer and see
//!   every committed transaction.
//! - on **PostgreSQL** through a typed `sqlx::PgPool` (rows decoded from `PgRow` directly, no
//!   `AnyRow` copy; async all the way).
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

/// sqlx rows: the general store's `AnyRow` and the typed PostgreSQL path's `PgRow`.
macro_rules! sqlx_cols {
    ($($row:ty),*) => {$(
        impl Cols for $row {
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
    )*};
}
sqlx_cols!(sqlx::any::AnyRow, sqlx::postgres::PgRow);

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

/// Read connections (and reader threads) per SQLite database.
const SQLITE_READERS: usize = 4;

/// A read run on a reader thread with that thread's connection.
type Job = Box<dyn FnOnce(&rusqlite::Connection) + Send>;

/// Dedicated reader threads, each owning one connection, fed through a channel (see the module
/// docs); `None` once the store is closed.
pub(crate) struct SqliteReaders {
    jobs: Mutex<Option<std::sync::mpsc::Sender<Job>>>,
}

fn open_sqlite(path: &str) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )
    .map_err(lite)?;
    c.execute_batch("PRAGMA busy_timeout=10000; PRAGMA query_only=ON;").map_err(lite)?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

impl SqliteReaders {
    /// Runs `job` with a read connection, off the async runtime's worker threads.
    async fn with_conn<R: Send + 'static>(
        &self,
        job: impl FnOnce(&rusqlite::Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let gone = || StoreError::Db(sqlx::Error::PoolClosed);
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = done.send(job(conn));
        });
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
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
        // Open every connection here, so that a bad path fails now rather than at the first read.
        let conns = (0..SQLITE_READERS).map(|_| open_sqlite(&path)).collect::<Result<Vec<_>>>()?;
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for (i, conn) in conns.into_iter().enumerate() {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("kumo-sqlite-read-{i}"))
                .spawn(move || loop {
                    // The lock is held while waiting, so one idle thread waits on the
                    // channel and the others on the lock; a job wakes exactly one.
                    let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(&conn),
                        // Every sender dropped: the store is closed.
                        Err(_) => return,
                    }
                })
                .map_err(|e| StoreError::Db(sqlx::Error::Io(e)))?;
        }
        Ok(Reader::Sqlite(Arc::new(SqliteReaders { jobs: Mutex::new(Some(tx)) })))
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
    pub(crate) async fn all<T: Send + 'static>(
        &self,
        sql: &str,
        binds: &[String],
        mut decode: impl FnMut(&dyn Cols) -> Result<T> + Send + 'static,
    ) -> Result<Vec<T>> {
        match self {
            Reader::Sqlite(r) => {
                let (sql, binds) = (sql.to_string(), binds.to_vec());
                r.with_conn(move |conn| run_sqlite(conn, &sql, &binds, &mut decode)).await
            }
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
    pub(crate) async fn one<T: Send + 'static>(
        &self,
        sql: &str,
        binds: &[String],
        decode: impl FnMut(&dyn Cols) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        Ok(self.all(sql, binds, decode).await?.into_iter().next())
    }

    /// Two reads with the same binds in one trip: on SQLite one hop to a reader thread and one
    /// snapshot (a read transaction around both); on PostgreSQL two queries on the pool.
    pub(crate) async fn both<A: Send + 'static, B: Send + 'static>(
        &self,
        sql_a: &str,
        sql_b: &str,
        binds: &[String],
        decode_a: impl FnMut(&dyn Cols) -> Result<A> + Send + 'static,
        decode_b: impl FnMut(&dyn Cols) -> Result<B> + Send + 'static,
    ) -> Result<(Vec<A>, Vec<B>)> {
        self.pair((sql_a, binds), (sql_b, binds), decode_a, decode_b).await
    }

    /// [`Reader::both`] with binds of their own for each read.
    pub(crate) async fn pair<A: Send + 'static, B: Send + 'static>(
        &self,
        (sql_a, binds_a): (&str, &[String]),
        (sql_b, binds_b): (&str, &[String]),
        mut decode_a: impl FnMut(&dyn Cols) -> Result<A> + Send + 'static,
        mut decode_b: impl FnMut(&dyn Cols) -> Result<B> + Send + 'static,
    ) -> Result<(Vec<A>, Vec<B>)> {
        match self {
            Reader::Sqlite(r) => {
                let (sql_a, sql_b) = (sql_a.to_string(), sql_b.to_string());
                let (binds_a, binds_b) = (binds_a.to_vec(), binds_b.to_vec());
                r.with_conn(move |conn| {
                    conn.execute_batch("BEGIN").map_err(lite)?;
                    let out = run_sqlite(conn, &sql_a, &binds_a, &mut decode_a)
                        .and_then(|a| Ok((a, run_sqlite(conn, &sql_b, &binds_b, &mut decode_b)?)));
                    if let Err(e) = conn.execute_batch("COMMIT") {
                        // Never leave a reader inside an old snapshot.
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(lite(e));
                    }
                    out
                })
                .await
            }
            Reader::Postgres(_) => {
                let a = self.all(sql_a, binds_a, decode_a).await?;
                Ok((a, self.all(sql_b, binds_b, decode_b).await?))
            }
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            // The threads finish the reads already queued, then exit and close their connections.
            Reader::Sqlite(r) => drop(r.jobs.lock().unwrap_or_else(|e| e.into_inner()).take()),
            Reader::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regression that reverted the first version: SQLite reads ran on the runtime's worker
    /// threads. Every read (and its decoding) must run on another thread than the task awaiting it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_reads_on_reader_threads_do_not_run_on_the_runtime_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup
            .execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE t (x TEXT); INSERT INTO t VALUES ('a'), ('b');")
            .unwrap();
        let reader = Reader::sqlite(&format!("sqlite://{}?mode=rwc", path.display())).unwrap();
        // On a runtime worker (a spawned task), as a request handler is.
        let (caller, seen) = tokio::spawn(async move {
            let caller = std::thread::current().id();
            let seen = reader
                .all("SELECT x FROM t WHERE x >= $1 ORDER BY x", &["a".to_string()], |r| {
                    Ok((r.text(0)?, std::thread::current().id()))
                })
                .await
                .unwrap();
            reader.close().await;
            (caller, seen)
        })
        .await
        .unwrap();
        assert_eq!(seen.iter().map(|(x, _)| x.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        for (_, thread) in &seen {
            assert_ne!(*thread, caller, "a SQLite read ran on the async worker that awaited it");
        }
    }
}
