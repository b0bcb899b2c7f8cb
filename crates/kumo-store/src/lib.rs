//! Kumo's persistence layer.
//!
//! One [`Store`] over either SQLite (the default, a file in the data directory) or PostgreSQL
//! (`--database postgres://…`), through sqlx's `Any` driver. The SQL in this crate is written once
//! and runs on both: `$N` placeholders, `BIGINT`/`TEXT`/`DOUBLE PRECISION` columns, partial unique
//! indexes, no database-specific functions. Migrations are embedded in the binary.
//!
//! Queries live in one module per resource. Functions that must compose into one transaction (for
//! example: reserve host capacity + insert an instance + record an event) take a `&mut Conn`, which
//! is either a pooled connection or an open transaction.
//!
//! The hot reads (an instance's view, a page of instances, a month's events for usage) take a
//! `&Store` instead and run on typed drivers, without `Any`'s per-row copies (see [`fast`]).
//!
//! SQLite allows one writer at a time; to avoid "database is locked" upgrades between concurrent
//! deferred transactions, writes go through a pool of exactly one connection on SQLite, while reads
//! use a pool of several (WAL mode lets them run beside the writer). On PostgreSQL both are one pool.

pub mod access_keys;
pub mod audit;
pub mod backups;
pub mod billing;
pub mod cloud;
pub mod events;
mod fast;
pub mod floating_ips;
pub mod hosts;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod join_tokens;
pub mod leases;
mod lookup;
pub mod members;
pub mod metering;
pub mod metrics;
pub mod migrations;
pub mod nics;
pub mod objects;
pub mod page;
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

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use std::str::FromStr;
use std::time::Duration;

pub use sqlx::AnyConnection as Conn;

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A pooled connection for reads.
pub type PoolConn = sqlx::pool::PoolConnection<sqlx::Any>;

/// Errors from the store. Unique-constraint violations are surfaced separately so the API can
/// answer 409 `ObjectAlreadyExists` instead of 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Whether `conn` is PostgreSQL's (for the few statements written per backend).
pub(crate) fn is_postgres(conn: &Conn) -> bool {
    conn.backend_name().eq_ignore_ascii_case("postgresql")
}

/// Maps unique violations (SQLite 2067/1555, PostgreSQL 23505) to `StoreError::Conflict`.
pub(crate) fn map_unique(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if db.is_unique_violation() {
            return StoreError::Conflict(db.message().to_string());
        }
    }
    StoreError::Db(e)
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The database handle shared by the control plane.
#[derive(Clone)]
pub struct Store {
    read: AnyPool,
    write: AnyPool,
    /// Typed drivers for the hot reads (see [`fast`]).
    fast: fast::Reader,
    backend: Backend,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and applies the embedded migrations.
    /// `url` is `sqlite:///path/to/kumo.db` or `postgres://user:pass@host/db`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::Corrupt(format!(
                "unsupported database URL '{url}': use sqlite:///path or postgres://…"
            )));
        };
        let store = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') { url.to_string() } else { format!("{url}?mode=rwc") };
                let opts = AnyConnectOptions::from_str(&url)?;
                let write = AnyPoolOptions::new()
                    .max_connections(1)
                    .after_connect(sqlite_init)
                    .connect_with(opts.clone())
                    .await?;
                // Migrate before the readers connect, so they see the schema.
                MIGRATOR.run(&write).await?;
                let read =
                    AnyPoolOptions::new().max_connections(4).after_connect(sqlite_init).connect_with(opts).await?;
                let fast = fast::Reader::sqlite(&url)?;
                Store { read, write, fast, backend }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                MIGRATOR.run(&pool).await?;
                let fast = fast::Reader::postgres(url).await?;
                Store { read: pool.clone(), write: pool, fast, backend }
            }
        };
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Pool for reads.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// A connection from the read pool.
    pub async fn read(&self) -> Result<PoolConn> {
        Ok(self.read.acquire().await?)
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(self.write.begin().await?)
    }

    pub async fn close(&self) {
        self.fast.close().await;
        self.read.close().await;
        self.write.close().await;
    }
}

type InitFuture<'c> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// Per-connection SQLite settings. WAL: readers run beside the writer. synchronous=FULL: an
/// acknowledged commit survives power loss, not just a process crash.
fn sqlite_init(conn: &mut sqlx::AnyConnection, _meta: sqlx::pool::PoolConnectionMetadata) -> InitFuture<'_> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
        )
        .await?;
        Ok(())
    })
}

/// Current time, truncated to microseconds (what the database keeps).
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Fixed-width RFC 3339 text: sorts like the time it encodes.
pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp '{s}': {e}")))
}

/// Parses an id column. Ids are stored as the text of their UUID (bound with `.bind(id.to_string())`);
/// `I` is a typed id of `kumo_types::id` (or a plain UUID, for a column naming any kind of thing,
/// like an event's resource).
pub(crate) fn parse_uuid<I: From<uuid::Uuid>>(s: &str) -> Result<I> {
    uuid::Uuid::parse_str(s).map(I::from).map_err(|e| StoreError::Corrupt(format!("bad uuid '{s}': {e}")))
}

/// Parses a labels column (a JSON object of strings).
pub(crate) fn labels_from_text(s: &str) -> Result<kumo_types::Labels> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("bad labels '{s}': {e}")))
}

/// The text of a labels column.
pub(crate) fn labels_to_text(labels: &kumo_types::Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

/// A new time-ordered id of any kind.
pub fn new_id<I: From<uuid::Uuid>>() -> I {
    I::from(uuid::Uuid::now_v7())
}
