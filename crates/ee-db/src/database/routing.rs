//! Which pool a statement goes to: a replica for a plain `SELECT`, else the
//! primary (writes, row locks, [`Database::on_primary`], a request that just
//! wrote); and handles for a tenant's schema.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::{Database, DbError, Engine};

use super::Pool;
use super::scope::wrote_within;

impl Database {
    /// A handle whose sessions use the PostgreSQL schema `name` as their
    /// `search_path` (schema-per-tenant). The path is set when a connection
    /// is checked out for this handle and put back when the next checkout is
    /// for another schema or none, so one tenant's path never reaches
    /// another's statement. `name` must be a plain identifier.
    pub fn with_schema(&self, name: &str) -> Result<Database, DbError> {
        if !valid_schema(name) {
            return Err(DbError::BadTenant(name.to_owned()));
        }
        if self.engine() != Engine::Postgres {
            return Err(DbError::Unsupported("schema-per-tenant needs PostgreSQL"));
        }
        Ok(Database {
            inner: self.inner.clone(),
            schema: Some(Arc::from(name)),
            primary_only: self.primary_only,
        })
    }

    /// A handle whose reads all go to the primary: for a `SELECT` that
    /// writes (`nextval`, a function with side effects) or must see the
    /// latest data.
    pub fn on_primary(&self) -> Database {
        Database {
            primary_only: true,
            ..self.clone()
        }
    }

    /// The pool `sql` runs on: the primary for anything but a plain
    /// `SELECT`, for this handle when [`on_primary`](Self::on_primary), and
    /// just after this request wrote; else the next replica in turn.
    pub(super) fn pick(&self, sql: &str) -> &Pool {
        let inner = &*self.inner;
        if inner.replicas.is_empty() || self.primary_only || !is_select(sql) || locks_rows(sql) {
            return &inner.primary;
        }
        if wrote_within(inner.read_your_writes) {
            return &inner.primary;
        }
        let i = inner.next.fetch_add(1, Ordering::Relaxed) % inner.replicas.len();
        &inner.replicas[i]
    }
}

/// A statement that starts with `SELECT` (a `WITH` may write: not one).
pub(super) fn is_select(sql: &str) -> bool {
    let head = sql.as_bytes().trim_ascii_start();
    // ASCII letters only: setting bit 5 lowercases them.
    head.len() >= 6 && head[..6].iter().zip(b"select").all(|(a, b)| a | 0x20 == *b)
}

/// `SELECT … FOR UPDATE / FOR SHARE` (and the key variants) lock rows: a
/// replica refuses them.
fn locks_rows(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    lower.contains(" for update")
        || lower.contains(" for share")
        || lower.contains(" for no key update")
        || lower.contains(" for key share")
}

/// A plain identifier that is not one of the system's schemas.
fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
        // The system's own schemas are never a tenant's.
        && !name.to_ascii_lowercase().starts_with("pg_")
        && !matches!(name.to_ascii_lowercase().as_str(), "public" | "information_schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_are_recognised() {
        assert!(is_select("SELECT 1"));
        assert!(is_select("  select * from t"));
        assert!(!is_select("INSERT INTO t VALUES (1) RETURNING id"));
        assert!(!is_select(
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x"
        ));
        assert!(!is_select("sel"));
    }

    #[test]
    fn row_locks_stay_on_the_primary() {
        assert!(locks_rows("SELECT * FROM t WHERE id = 1 FOR UPDATE"));
        assert!(locks_rows("select * from t for no key update skip locked"));
        assert!(!locks_rows("SELECT * FROM t"));
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema("tenant_42"));
        for bad in ["", "1abc", "a\"; DROP SCHEMA x; --", "a-b", &"x".repeat(64)] {
            assert!(!valid_schema(bad), "{bad}");
        }
    }
}
