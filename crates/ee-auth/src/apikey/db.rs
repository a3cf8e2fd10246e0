//! `DbApiKeys`: records in PostgreSQL or SQLite through ee-db (features
//! `postgres`, `sqlite`). One table, the same SQL on both engines.

use ee_db::{Database, DbError, params};
use serde::Deserialize;

use super::format::{from_hex, to_hex};
use super::store::{ApiKeyRecord, ApiKeyStore, Inserted};
use crate::AuthError;

/// API key records in one SQL table, `ee_auth_api_keys`, on PostgreSQL or
/// SQLite (one [`ee_db::Database`] API for both).
///
/// Create the table with [`ensure_schema`](Self::ensure_schema) at start-up,
/// or put [`DbApiKeys::SCHEMA`] in your own migrations. On PostgreSQL the
/// table lives in the connection's `search_path` (a schema per application
/// or tenant: `db.with_schema("billing")`).
///
/// A database that cannot be reached (pool timeout, server down) is
/// [`AuthError::Unavailable`], a 503. Reads go where the `Database` sends
/// `SELECT`s: with read replicas, a revocation reaches a replica after its
/// replication lag; pass `db.on_primary()` to read revocations at once.
#[derive(Debug, Clone)]
pub struct DbApiKeys {
    db: Database,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    hash: String,
    owner: String,
    name: String,
    scopes: String,
    roles: String,
    tenant: Option<String>,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    last_used_ms: Option<i64>,
}

macro_rules! select {
    ($where:literal) => {
        concat!(
            "SELECT id, hash, owner, name, scopes, roles, tenant, created_at_ms, expires_at_ms, \
             revoked_at_ms, last_used_ms FROM ee_auth_api_keys ",
            $where
        )
    };
}

fn store_error(e: DbError) -> AuthError {
    if e.status() == http::StatusCode::SERVICE_UNAVAILABLE {
        AuthError::unavailable("api key store", e)
    } else {
        AuthError::Config(format!(
            "api key store: {e} (was `DbApiKeys::ensure_schema` run, or `DbApiKeys::SCHEMA` migrated?)"
        ))
    }
}

fn corrupt(id: &str, what: &str) -> AuthError {
    AuthError::Config(format!(
        "api key store: the row of key id `{id}` is unreadable ({what})"
    ))
}

fn to_ms(id: &str, what: &str, v: Option<i64>) -> Result<Option<u64>, AuthError> {
    v.map(|v| u64::try_from(v).map_err(|_| corrupt(id, what)))
        .transpose()
}

fn to_sql(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl Row {
    fn into_record(self) -> Result<ApiKeyRecord, AuthError> {
        let id = self.id;
        let hash = from_hex(&self.hash).ok_or_else(|| corrupt(&id, "hash"))?;
        let list = |v: &str, what| -> Result<Vec<String>, AuthError> {
            serde_json::from_str(v).map_err(|_| corrupt(&id, what))
        };
        Ok(ApiKeyRecord {
            hash,
            scopes: list(&self.scopes, "scopes")?,
            roles: list(&self.roles, "roles")?,
            created_at_ms: to_ms(&id, "created_at_ms", Some(self.created_at_ms))?.unwrap_or(0),
            expires_at_ms: to_ms(&id, "expires_at_ms", self.expires_at_ms)?,
            revoked_at_ms: to_ms(&id, "revoked_at_ms", self.revoked_at_ms)?,
            last_used_ms: to_ms(&id, "last_used_ms", self.last_used_ms)?,
            owner: self.owner,
            name: self.name,
            tenant: self.tenant,
            id,
        })
    }
}

impl DbApiKeys {
    /// The table and its index, valid SQL on PostgreSQL and SQLite alike
    /// (idempotent: `IF NOT EXISTS`). Times are Unix milliseconds; `hash` is
    /// the hex SHA-256 of the key's secret; `scopes` and `roles` are JSON arrays.
    pub const SCHEMA: &'static str = "\
CREATE TABLE IF NOT EXISTS ee_auth_api_keys (
    id            TEXT PRIMARY KEY,
    hash          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    name          TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    roles         TEXT NOT NULL,
    tenant        TEXT,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    last_used_ms  BIGINT
);
CREATE INDEX IF NOT EXISTS ee_auth_api_keys_owner ON ee_auth_api_keys (owner);
";

    /// Records in `db` (create the table first: [`ensure_schema`](Self::ensure_schema)).
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates the table and its index if they do not exist ([`Self::SCHEMA`]).
    pub async fn ensure_schema(&self) -> Result<(), AuthError> {
        self.db.batch(Self::SCHEMA).await.map_err(store_error)
    }

    /// The database.
    pub fn database(&self) -> &Database {
        &self.db
    }
}

impl ApiKeyStore for DbApiKeys {
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        let row = self
            .db
            .query_opt(select!("WHERE id = $1"), params![id])
            .await
            .map_err(store_error)?;
        row.map(|r| {
            r.decode::<Row>()
                .map_err(|e| corrupt(id, &e.to_string()))?
                .into_record()
        })
        .transpose()
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<Inserted, AuthError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let changed = self
            .db
            .execute(
                "INSERT INTO ee_auth_api_keys (id, hash, owner, name, scopes, roles, tenant, \
                 created_at_ms, expires_at_ms, revoked_at_ms, last_used_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (id) DO NOTHING",
                params![
                    record.id.as_str(),
                    to_hex(&record.hash),
                    record.owner.as_str(),
                    record.name.as_str(),
                    json(&record.scopes),
                    json(&record.roles),
                    record.tenant.clone(),
                    to_sql(record.created_at_ms),
                    record.expires_at_ms.map(to_sql),
                    record.revoked_at_ms.map(to_sql),
                    record.last_used_ms.map(to_sql)
                ],
            )
            .await
            .map_err(store_error)?;
        Ok(if changed == 0 {
            Inserted::IdTaken
        } else {
            Inserted::Stored
        })
    }

    async fn revoke(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        let changed = self
            .db
            .execute(
                "UPDATE ee_auth_api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $2) WHERE id = $1",
                params![id, to_sql(at_ms)],
            )
            .await
            .map_err(store_error)?;
        if changed == 0 {
            return Err(AuthError::NotFound);
        }
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        let rows: Vec<Row> = self
            .db
            .query_as(
                select!("WHERE owner = $1 ORDER BY created_at_ms, id"),
                params![owner],
            )
            .await
            .map_err(store_error)?;
        rows.into_iter().map(Row::into_record).collect()
    }

    async fn touch(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        self.db
            .execute(
                "UPDATE ee_auth_api_keys SET last_used_ms = $2 WHERE id = $1",
                params![id, to_sql(at_ms)],
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
