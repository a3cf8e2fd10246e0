//! One error type; each kind maps to an RFC 9457 problem.

use std::time::Duration;

use http::StatusCode;

use ee_core::Problem;

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// No connection became free within the pool's `connect_timeout`
    /// (pool exhausted or the server unreachable). Maps to 503.
    #[error("no database connection within {0:?}")]
    PoolTimeout(std::time::Duration),
    /// The server could not be reached or the connection broke. Maps to 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed. `code` is the SQLSTATE (PostgreSQL) or the
    /// extended result code (SQLite). Maps to 500; 409 for a unique,
    /// foreign-key or check violation; 400 for a data exception (22xxx).
    #[error("query failed{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Query {
        /// SQLSTATE (`23505`, `40001`, …) or SQLite's code name.
        code: Option<String>,
        /// The server's message.
        message: String,
    },
    /// `query_one` found no row. Maps to 404.
    #[error("no row found")]
    NotFound,
    /// A column could not be decoded into the requested type. Maps to 500.
    #[error("cannot decode row: {0}")]
    Decode(String),
    /// An applied migration's file has changed since it ran.
    #[error("migration {version} ({name}) changed since it was applied: refusing to run")]
    MigrationChanged {
        /// The migration's version.
        version: i64,
        /// Its file name.
        name: String,
    },
    /// A migration list or file name is not usable.
    #[error("bad migration: {0}")]
    BadMigration(String),
    /// A tenant name that is not a plain identifier.
    #[error("`{0}` is not a valid tenant schema name (letters, digits and `_`, at most 63)")]
    BadTenant(String),
    /// A `DbConfig` value that cannot work (a zero timeout, `min_idle`
    /// above `max_size`).
    #[error("bad database configuration: {0}")]
    BadConfig(String),
    /// What this engine cannot do (schemas and row-level security are
    /// PostgreSQL's).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The caller's own error, returned from a transaction closure to roll
    /// it back.
    #[error("{0}")]
    Aborted(Box<dyn std::error::Error + Send + Sync>),
}

impl DbError {
    /// Wraps an application error to abort (roll back) a transaction.
    pub fn abort(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        DbError::Aborted(e.into())
    }

    /// The SQLSTATE or SQLite code, when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            DbError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// A serialization failure (40001), a deadlock (40P01) or SQLite's
    /// `SQLITE_BUSY`: running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.code(), Some("40001" | "40P01" | "SQLITE_BUSY"))
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            DbError::PoolTimeout(_) | DbError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DbError::NotFound => StatusCode::NOT_FOUND,
            DbError::Query { code, .. } => match code.as_deref() {
                Some(
                    "23505"
                    | "23503"
                    | "23514"
                    | "SQLITE_CONSTRAINT_UNIQUE"
                    | "SQLITE_CONSTRAINT_PRIMARYKEY"
                    | "SQLITE_CONSTRAINT_FOREIGNKEY"
                    | "SQLITE_CONSTRAINT_CHECK",
                ) => StatusCode::CONFLICT,
                Some("40001" | "40P01" | "SQLITE_BUSY") => StatusCode::SERVICE_UNAVAILABLE,
                // Data exceptions (22xxx): a value the server refused
                // (`'x'::int`, a malformed UUID, a division by zero) — what a
                // client sent, as PostgREST reads them.
                Some(c) if c.starts_with("22") => StatusCode::BAD_REQUEST,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The problem+json answer: `https://ee.rs/problems/db/<kind>` with the
/// error's [`status`](DbError::status), and `Retry-After: 1` on a 503. Server
/// messages are not shown to clients (they may name tables and values); a
/// handler logs them, as [`DbError`]'s `IntoResponse` does for 5xx.
///
/// ```
/// use ee_core::Problem;
/// use ee_db::DbError;
///
/// let problem = Problem::from(DbError::PoolTimeout(std::time::Duration::from_secs(5)));
/// assert_eq!(problem.status(), 503);
/// assert_eq!(problem.retry_after(), Some(std::time::Duration::from_secs(1)));
/// ```
impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        Problem::from(&e)
    }
}

/// The same problem as `From<DbError>`, for an error that is shared (an
/// `Arc<DbError>` that a cache's single-flight load hands every waiter).
impl From<&DbError> for Problem {
    fn from(e: &DbError) -> Self {
        let status = e.status();
        let (kind, title, detail) = match e {
            DbError::PoolTimeout(_) => (
                "unavailable",
                "Database busy",
                "no database connection became free in time; retry shortly",
            ),
            DbError::Unavailable(_) => (
                "unavailable",
                "Database unavailable",
                "the database cannot be reached; retry shortly",
            ),
            DbError::NotFound => ("not-found", "Not found", "no such record"),
            _ if status == StatusCode::CONFLICT => (
                "conflict",
                "Conflict",
                "the change conflicts with an existing record",
            ),
            _ if status == StatusCode::BAD_REQUEST => (
                "invalid-value",
                "Invalid value",
                "a value in the request is not valid for the database",
            ),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => (
                "contention",
                "Database contention",
                "the transaction could not complete because of concurrent changes; retry",
            ),
            _ => (
                "internal",
                "Database error",
                "the request failed in the database",
            ),
        };
        let problem = Problem::ee(status, "db", kind)
            .with_title(title)
            .with_detail(detail);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            problem.with_retry_after(Duration::from_secs(1))
        } else {
            problem
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for DbError {
    fn into_response(self) -> axum::response::Response {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "database error");
        }
        Problem::from(self).into_response()
    }
}

#[cfg(feature = "postgres")]
impl From<tokio_postgres::Error> for DbError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code().code();
            // admin_shutdown, crash_shutdown, cannot_connect_now: the
            // session is gone, not the statement wrong.
            if matches!(code, "57P01" | "57P02" | "57P03") {
                return DbError::Unavailable(format!("{code}: {}", db.message()));
            }
            return DbError::Query {
                code: Some(db.code().code().to_owned()),
                message: db.message().to_owned(),
            };
        }
        if e.is_closed() {
            return DbError::Unavailable(e.to_string());
        }
        let text =
            std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| format!("{e}: {s}"));
        DbError::Query {
            code: None,
            message: text,
        }
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        match &e {
            rusqlite::Error::QueryReturnedNoRows => DbError::NotFound,
            rusqlite::Error::SqliteFailure(f, msg) => DbError::Query {
                code: Some(sqlite_code(f)),
                message: msg.clone().unwrap_or_else(|| f.to_string()),
            },
            _ => DbError::Query {
                code: None,
                message: e.to_string(),
            },
        }
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_code(f: &rusqlite::ffi::Error) -> String {
    use rusqlite::ffi;
    match f.extended_code {
        ffi::SQLITE_CONSTRAINT_UNIQUE => "SQLITE_CONSTRAINT_UNIQUE".into(),
        ffi::SQLITE_CONSTRAINT_PRIMARYKEY => "SQLITE_CONSTRAINT_PRIMARYKEY".into(),
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "SQLITE_CONSTRAINT_FOREIGNKEY".into(),
        ffi::SQLITE_CONSTRAINT_CHECK => "SQLITE_CONSTRAINT_CHECK".into(),
        _ => match f.code {
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                "SQLITE_BUSY".into()
            }
            rusqlite::ErrorCode::ConstraintViolation => "SQLITE_CONSTRAINT".into(),
            other => format!("SQLITE_{other:?}").to_uppercase(),
        },
    }
}
