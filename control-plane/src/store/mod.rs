//! The database: SQLite (one file, WAL) or PostgreSQL, through sqlx's `Any` driver so that every
//! query is written once. Placeholders are `$1`-style, which both engines accept; the two schema
//! dialects live side by side in `migrations/sqlite` and `migrations/postgres` with the same
//! numbered steps.
//!
//! Every mutation is one transaction: the change, its [`audit`] row and, for keys, its
//! [`outbox`] row commit together or not at all. Modules depend one way: [`keys`] writes the
//! [`outbox`]; [`snapshot`] reads [`keys`] to queue records again; nothing points back.

pub mod audit;
pub mod catalog;
pub mod ceilings;
pub mod keys;
pub mod outbox;
pub mod sessions;
pub mod snapshot;
pub mod usage;
pub mod users;

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::migrate::Migrator;
use sqlx::{Any, AnyPool, Executor, Transaction};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DATABASE_URL must start with sqlite:// or postgres:// (got a {0:?} URL)")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The change breaks a rule; nothing was written.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// A row that keygate wrote no longer parses: the database was edited by hand or corrupted.
    #[error("stored {what} {id} is not valid: {detail}")]
    Corrupt {
        what: &'static str,
        id: String,
        detail: String,
    },
}

impl StoreError {
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(error) if error
            .as_database_error()
            .is_some_and(|db| db.is_unique_violation()))
    }
}

/// Why a change was refused, in words fit for the caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this (a grant ceiling, a restriction they cannot lift).
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    /// The resource's state does not allow it (a revoked key cannot be enabled, ...).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The request is well-formed but its content is not acceptable.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
}

impl Refusal {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::Forbidden {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn of(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            Err(StoreError::UnsupportedUrl(scheme.to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// A pool for reads and one for transactions. On PostgreSQL they are the same pool; SQLite allows
/// one writer at a time, so within a process its transactions queue on a single connection.
#[derive(Clone, Debug)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects and brings the schema up to date. A SQLite file is created if missing.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = Backend::of(url)?;
        let db = match backend {
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(max_connections.max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?;
                Self {
                    read: pool.clone(),
                    write: pool,
                    backend,
                }
            }
            Backend::Sqlite => {
                let url = sqlite_url(url);
                let write = sqlite_pool(&url, 1).await?;
                // The writer creates the file and switches it to WAL before readers open it.
                let read = sqlite_pool(&url, max_connections.max(1)).await?;
                Self {
                    read,
                    write,
                    backend,
                }
            }
        };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&db.write).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&db.write).await?,
        }
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// For single statements that write outside a transaction.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`): a
    /// deferred transaction that reads and then writes fails at once with "database is locked"
    /// when another process (a second replica, `keygate bootstrap`) wrote in between, whereas
    /// an immediate one waits its turn for up to the busy timeout.
    pub(crate) async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write.begin().await?,
        })
    }

    /// For `/readyz`: the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read.execute("SELECT 1").await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// `mode=rwc` so a missing file is created on first start.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

async fn sqlite_pool(url: &str, max_connections: u32) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|connection, _| {
            Box::pin(async move {
                connection
                    .execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
                    )
                    .await
                    .map(drop)
            })
        })
        .connect(url)
        .await?)
}

/// Who did it, in which request and from where: stamped on the audit row of every mutation.
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: Option<String>,
    pub request_id: Option<String>,
    pub client_ip: Option<String>,
    pub now: i64,
}

pub(crate) fn corrupt(what: &'static str, id: &str, detail: impl ToString) -> StoreError {
    StoreError::Corrupt {
        what,
        id: id.to_owned(),
        detail: detail.to_string(),
    }
}

/// Statement parameters per chunk: well under SQLite's and PostgreSQL's limits.
pub(crate) const CHUNK: usize = 500;

/// `$start, $start+1, ...`: `count` placeholders.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    (start..start + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `WHERE` clause built from optional filters, numbering its `$n` placeholders as it goes.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    clauses: Vec<String>,
    values: Vec<Param>,
}

#[derive(Debug)]
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

impl Conditions {
    /// Adds a value and returns its placeholder, for clauses that use it more than once.
    pub(crate) fn param(&mut self, value: Param) -> String {
        self.values.push(value);
        format!("${}", self.values.len())
    }

    pub(crate) fn clause(&mut self, sql: String) {
        self.clauses.push(sql);
    }

    /// `<left> $n`, e.g. `text("owner_id =", id)`.
    pub(crate) fn text(&mut self, left: &str, value: &str) {
        let placeholder = self.param(Param::Text(value.to_owned()));
        self.clause(format!("{left} {placeholder}"));
    }

    pub(crate) fn int(&mut self, left: &str, value: i64) {
        let placeholder = self.param(Param::Int(value));
        self.clause(format!("{left} {placeholder}"));
    }

    pub(crate) fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub(crate) fn bind_all<'q>(
        &'q self,
        mut query: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>> {
        for value in &self.values {
            query = match value {
                Param::Text(text) => query.bind(text.as_str()),
                Param::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two dialects must stay one schema: the same steps, and the same SQL apart from the
    /// header and the identity columns.
    #[test]
    fn both_dialects_have_the_same_migrations() {
        let steps = |migrator: &Migrator| -> Vec<(i64, String, String)> {
            migrator
                .iter()
                .map(|migration| {
                    let sql = migration
                        .sql
                        .lines()
                        .filter(|line| !line.starts_with("-- keygate schema"))
                        .collect::<Vec<_>>()
                        .join("\n")
                        .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "IDENTITY")
                        .replace(
                            "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                            "IDENTITY",
                        );
                    (migration.version, migration.description.to_string(), sql)
                })
                .collect()
        };
        let sqlite = steps(&SQLITE_MIGRATIONS);
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, steps(&POSTGRES_MIGRATIONS));
    }

    #[test]
    fn only_sqlite_and_postgres_urls_are_accepted() {
        assert_eq!(
            Backend::of("sqlite://keygate.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(
            Backend::of("postgres://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::of("postgresql://u@h/db").ok(),
            Some(Backend::Postgres)
        );
        let refused = Backend::of("mysql://u:secret@h/db")
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("\"mysql\"") && !refused.contains("secret"),
            "{refused}"
        );
        assert_eq!(sqlite_url("sqlite://a.db"), "sqlite://a.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://a.db?mode=ro"), "sqlite://a.db?mode=ro");
    }
}
