//! Records shared by every instance through Redis or Redis Cluster (feature `redis`).
//!
//! One key per record (`ee:idempotency:<scope>:<key>`, so any Cluster slot
//! will do), each written with a TTL: the lease while in flight, the retention
//! once completed. Each operation is one script, one round trip.

use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use ee_core::{RedisConn, RedisError, Script};

use crate::store::{Begin, Fingerprint, IdempotencyStore, Record, StoreError, StoredResponse};

/// GET, or SET NX with the lease when free: returns the existing record or nil.
static BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if v then return v end
         redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
         return false",
    )
});

/// Replaces the in-flight record by the completed one if `token` still holds it.
/// The token sits at bytes 35..42 of an in-flight record (version, state, 32-byte fingerprint).
static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if v and string.byte(v, 2) == 1 and string.sub(v, 35, 42) == ARGV[1] then
           redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
           return 1
         end
         return 0",
    )
});

/// Renews the lease of the in-flight record if `token` still holds it.
static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if v and string.byte(v, 2) == 1 and string.sub(v, 35, 42) == ARGV[1] then
           return redis.call('PEXPIRE', KEYS[1], ARGV[2])
         end
         return 0",
    )
});

/// Deletes the in-flight record if `token` still holds it.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local v = redis.call('GET', KEYS[1])
         if v and string.byte(v, 2) == 1 and string.sub(v, 35, 42) == ARGV[1] then
           return redis.call('DEL', KEYS[1])
         end
         return 0",
    )
});

/// Records in Redis: standalone or Cluster through `ee_core::RedisConn`,
/// every call bounded by the connection's timeout.
#[derive(Debug, Clone)]
pub struct RedisStore {
    conn: RedisConn,
}

impl RedisStore {
    /// A store on `conn`.
    pub fn new(conn: RedisConn) -> Self {
        Self { conn }
    }

    /// Bounds every store call by `timeout` (default: the connection's).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            conn: self.conn.with_timeout(timeout),
        }
    }
}

fn store_error(e: RedisError) -> StoreError {
    if e.is_unavailable() {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Corrupt(e.to_string())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl IdempotencyStore for RedisStore {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        let record = Record::InFlight {
            fingerprint: *fingerprint,
            token,
        }
        .encode();
        let existing: Option<Vec<u8>> = self
            .conn
            .invoke(BEGIN.key(key).arg(&record[..]).arg(millis(lease)))
            .await
            .map_err(store_error)?;
        let Some(existing) = existing else {
            return Ok(Begin::Acquired);
        };
        Ok(Record::decode(Bytes::from(existing))?.into())
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let record = Record::Completed {
            fingerprint: *fingerprint,
            response: response.clone(),
        }
        .encode();
        let stored: i64 = self
            .conn
            .invoke(
                COMPLETE
                    .key(key)
                    .arg(&token.to_be_bytes()[..])
                    .arg(&record[..])
                    .arg(millis(ttl)),
            )
            .await
            .map_err(store_error)?;
        Ok(stored == 1)
    }

    async fn extend(&self, key: &str, token: u64, lease: Duration) -> Result<bool, StoreError> {
        let renewed: i64 = self
            .conn
            .invoke(
                EXTEND
                    .key(key)
                    .arg(&token.to_be_bytes()[..])
                    .arg(millis(lease)),
            )
            .await
            .map_err(store_error)?;
        Ok(renewed == 1)
    }

    async fn release(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .conn
            .invoke(RELEASE.key(key).arg(&token.to_be_bytes()[..]))
            .await
            .map_err(store_error)?;
        Ok(())
    }
}
