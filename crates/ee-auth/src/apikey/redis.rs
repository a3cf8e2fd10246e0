//! `RedisApiKeys`: records shared by every instance through Redis (feature `redis`).
//!
//! One hash per key, `ee:auth:apikey:<id>`, fields: `h` (hex SHA-256 of the
//! secret), `o` owner, `n` name, `s` scopes and `r` roles (JSON arrays), `t`
//! tenant, `c` created, `e` expires, `x` revoked, `u` last used (Unix ms; a
//! missing field is "none"). One set per owner, `ee:auth:apikey-owner:<owner>`,
//! holds the owner's ids for `list`. Each write is one single-key script, so
//! it works on a Cluster (the record and the owner's set may live on
//! different nodes).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use ee_core::{KeySpace, RedisConn, RedisError, Script};

use super::format::{from_hex, to_hex};
use super::store::{ApiKeyRecord, ApiKeyStore, Inserted};
use crate::AuthError;

/// How long a record of an expired key is kept after its expiry, so `list`
/// still shows it for a while; then Redis deletes it (its TTL).
const EXPIRED_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Creates the record unless the id exists; `ARGV[1]` is the `PEXPIREAT`
/// time or empty, the rest are field/value pairs.
static INSERT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
         redis.call('HSET', KEYS[1], unpack(ARGV, 2))
         if ARGV[1] ~= '' then redis.call('PEXPIREAT', KEYS[1], ARGV[1]) end
         return 1",
    )
});

/// Sets `x` (revoked at) unless set; 0 when there is no such record.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
         redis.call('HSETNX', KEYS[1], 'x', ARGV[1])
         return 1",
    )
});

/// Sets `u` (last used) on an existing record (never creates one).
static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
         redis.call('HSET', KEYS[1], 'u', ARGV[1])
         return 1",
    )
});

/// API key records in Redis or Redis Cluster, through `ee_core::RedisConn`
/// (every call bounded by the connection's timeout; an unreachable server or
/// a timeout is [`AuthError::Unavailable`], a 503).
///
/// Key lifetimes: a record of a key with an expiry gets a TTL of its expiry
/// plus 7 days; a record of a key without one, and the owner sets, are owned
/// by the application (revoking keeps the record, so `list` shows it; delete
/// `ee:auth:apikey:<id>` to forget it, and `list` drops its id from the set).
#[derive(Debug, Clone)]
pub struct RedisApiKeys {
    conn: RedisConn,
    keys: KeySpace,
}

impl RedisApiKeys {
    /// Records on `conn`, under `ee:auth:`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            keys: KeySpace::new("auth"),
        }
    }

    /// Records under another key space (`KeySpace::new("auth-staging")`), for
    /// several applications or tests sharing one Redis.
    pub fn with_key_space(mut self, keys: KeySpace) -> Self {
        self.keys = keys;
        self
    }

    /// Bounds every store call by `timeout` (default: the connection's).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.conn = self.conn.with_timeout(timeout);
        self
    }

    /// The Redis key of `id`'s record.
    pub fn record_key(&self, id: &str) -> String {
        self.keys.key(&["apikey", id])
    }

    fn owner_key(&self, owner: &str) -> String {
        self.keys.key(&["apikey-owner", owner])
    }
}

fn store_error(e: RedisError) -> AuthError {
    if e.is_unavailable() {
        AuthError::unavailable("api key store", e)
    } else {
        AuthError::Config(format!(
            "api key store: Redis refused a command ({e}); is another application using the \
             `ee:auth:` keys? (`RedisApiKeys::with_key_space` moves them)"
        ))
    }
}

fn corrupt(id: &str, what: &str) -> AuthError {
    AuthError::Config(format!(
        "api key store: the Redis record of key id `{id}` is unreadable ({what})"
    ))
}

fn parse_ms(
    id: &str,
    field: &str,
    fields: &HashMap<String, String>,
) -> Result<Option<u64>, AuthError> {
    fields
        .get(field)
        .map(|v| v.parse().map_err(|_| corrupt(id, field)))
        .transpose()
}

fn parse_list(
    id: &str,
    field: &str,
    fields: &HashMap<String, String>,
) -> Result<Vec<String>, AuthError> {
    match fields.get(field) {
        None => Ok(Vec::new()),
        Some(v) => serde_json::from_str(v).map_err(|_| corrupt(id, field)),
    }
}

/// A record from its hash's fields; `None` for an empty hash (no record).
fn decode(
    id: &str,
    mut fields: HashMap<String, String>,
) -> Result<Option<ApiKeyRecord>, AuthError> {
    if fields.is_empty() {
        return Ok(None);
    }
    let hash = fields
        .get("h")
        .and_then(|h| from_hex(h))
        .ok_or_else(|| corrupt(id, "h"))?;
    Ok(Some(ApiKeyRecord {
        id: id.to_owned(),
        hash,
        scopes: parse_list(id, "s", &fields)?,
        roles: parse_list(id, "r", &fields)?,
        created_at_ms: parse_ms(id, "c", &fields)?.ok_or_else(|| corrupt(id, "c"))?,
        expires_at_ms: parse_ms(id, "e", &fields)?,
        revoked_at_ms: parse_ms(id, "x", &fields)?,
        last_used_ms: parse_ms(id, "u", &fields)?,
        owner: fields.remove("o").ok_or_else(|| corrupt(id, "o"))?,
        name: fields.remove("n").unwrap_or_default(),
        tenant: fields.remove("t"),
    }))
}

impl RedisApiKeys {
    async fn fetch(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        let fields: HashMap<String, String> = self
            .conn
            .query(redis::cmd("HGETALL").arg(self.record_key(id)))
            .await
            .map_err(store_error)?;
        decode(id, fields)
    }
}

impl ApiKeyStore for RedisApiKeys {
    async fn get(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
        self.fetch(id).await
    }

    async fn insert(&self, record: &ApiKeyRecord) -> Result<Inserted, AuthError> {
        let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let expire = record.expires_at_ms.map_or_else(String::new, |at| {
            at.saturating_add(EXPIRED_RETENTION.as_millis() as u64)
                .to_string()
        });
        let key = self.record_key(&record.id);
        let mut call = INSERT.key(&key);
        call.arg(expire)
            .arg("h")
            .arg(to_hex(&record.hash))
            .arg("o")
            .arg(&record.owner)
            .arg("n")
            .arg(&record.name)
            .arg("s")
            .arg(json(&record.scopes))
            .arg("r")
            .arg(json(&record.roles))
            .arg("c")
            .arg(record.created_at_ms);
        for (field, value) in [
            ("t", record.tenant.clone()),
            ("e", record.expires_at_ms.map(|v| v.to_string())),
            ("x", record.revoked_at_ms.map(|v| v.to_string())),
            ("u", record.last_used_ms.map(|v| v.to_string())),
        ] {
            if let Some(value) = value {
                call.arg(field).arg(value);
            }
        }
        let stored: i64 = self.conn.invoke(&call).await.map_err(store_error)?;
        if stored == 0 {
            return Ok(Inserted::IdTaken);
        }
        // The owner's set lives in another slot: a second call. If it fails,
        // take the record back, so no key exists that `list` cannot show.
        let indexed: Result<i64, _> = self
            .conn
            .query(
                redis::cmd("SADD")
                    .arg(self.owner_key(&record.owner))
                    .arg(&record.id),
            )
            .await;
        if let Err(e) = indexed {
            let _: Result<i64, _> = self.conn.query(redis::cmd("DEL").arg(&key)).await;
            return Err(store_error(e));
        }
        Ok(Inserted::Stored)
    }

    async fn revoke(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        let found: i64 = self
            .conn
            .invoke(REVOKE.key(self.record_key(id)).arg(at_ms))
            .await
            .map_err(store_error)?;
        if found == 0 {
            return Err(AuthError::NotFound);
        }
        Ok(())
    }

    async fn list(&self, owner: &str) -> Result<Vec<ApiKeyRecord>, AuthError> {
        let owner_key = self.owner_key(owner);
        let ids: Vec<String> = self
            .conn
            .query(redis::cmd("SMEMBERS").arg(&owner_key))
            .await
            .map_err(store_error)?;
        let mut records = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for id in ids {
            match self.fetch(&id).await? {
                Some(record) => records.push(record),
                None => gone.push(id),
            }
        }
        if !gone.is_empty() {
            // Records Redis expired (or someone deleted): forget their ids.
            let _: Result<i64, _> = self
                .conn
                .query(redis::cmd("SREM").arg(&owner_key).arg(&gone))
                .await;
        }
        Ok(records)
    }

    async fn touch(&self, id: &str, at_ms: u64) -> Result<(), AuthError> {
        let _: i64 = self
            .conn
            .invoke(TOUCH.key(self.record_key(id)).arg(at_ms))
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
