//! Refresh-token families in Redis (feature `redis`): one hash per family,
//! `ee:auth:{<family>}:refresh`, expiring with the family; every step is one
//! Lua script, so concurrent rotations of one token are decided one at a time.

use std::sync::LazyLock;
use std::time::Duration;

use ee_core::{KeySpace, RedisConn, RedisError, Script};

use super::{MAX_USED_TOKENS, NewFamily, RefreshStore, RotateOutcome, Rotation};
use crate::AuthError;

/// Fields: `sub`, `cur` (current token hash), `gen`, `abs` and `idle`
/// (expiries, ms), `rev` (revoked), `u:<hash>` (a used token) and
/// `r:<slot>` (the ring that bounds the used tokens).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'cur', ARGV[2], 'gen', 0, 'abs', ARGV[3], 'idle', ARGV[4])
         redis.call('PEXPIREAT', KEYS[1], ARGV[4])
         return 1",
    )
});

/// ARGV: presented hash, next hash, now (ms), idle expiry (ms), ring size.
/// Returns {kind, subject, generation, absolute expiry}.
static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local f = redis.call('HMGET', KEYS[1], 'cur', 'gen', 'sub', 'abs', 'idle', 'rev')
         if not f[1] then return {'unknown'} end
         local now = tonumber(ARGV[3])
         if now >= tonumber(f[4]) or now >= tonumber(f[5]) then return {'expired'} end
         if f[6] then return {'revoked'} end
         if f[1] == ARGV[1] then
           local gen = tonumber(f[2])
           local slot = 'r:' .. (gen % tonumber(ARGV[5]))
           local old = redis.call('HGET', KEYS[1], slot)
           if old then redis.call('HDEL', KEYS[1], 'u:' .. old) end
           local idle = ARGV[4]
           if tonumber(idle) > tonumber(f[4]) then idle = f[4] end
           redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'gen', gen + 1, 'idle', idle,
                      slot, ARGV[1], 'u:' .. ARGV[1], gen)
           redis.call('PEXPIREAT', KEYS[1], idle)
           return {'rotated', f[3], tostring(gen + 1), f[4]}
         end
         if redis.call('HEXISTS', KEYS[1], 'u:' .. ARGV[1]) == 1 then
           redis.call('HSET', KEYS[1], 'rev', '1')
           return {'reused', f[3]}
         end
         return {'unknown'}",
    )
});

static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "if redis.call('EXISTS', KEYS[1]) == 1 then
           redis.call('HSET', KEYS[1], 'rev', '1')
           return 1
         end
         return 0",
    )
});

/// Refresh-token families shared by every instance through Redis or Redis
/// Cluster (one key per family, so families spread over the slots).
///
/// Fails closed: when Redis cannot be reached, issuing and rotating answer
/// [`AuthError::Unavailable`] (a memory fallback would lose reuse detection).
#[derive(Debug, Clone)]
pub struct RedisRefreshStore {
    conn: RedisConn,
    keys: KeySpace,
}

impl RedisRefreshStore {
    /// A store on `conn`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            keys: KeySpace::new("auth"),
        }
    }

    /// Bounds every call by `timeout` (default: the connection's).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            conn: self.conn.with_timeout(timeout),
            keys: self.keys,
        }
    }

    fn key(&self, family: &str) -> String {
        self.keys.tagged(&[family], &["refresh"])
    }
}

fn store_error(e: RedisError) -> AuthError {
    if e.is_unavailable() {
        AuthError::unavailable("refresh token store", e)
    } else {
        AuthError::Config(format!("refresh token store: {e}"))
    }
}

impl RefreshStore for RedisRefreshStore {
    async fn create(&self, new: &NewFamily<'_>) -> Result<(), AuthError> {
        let _: i64 = self
            .conn
            .invoke(
                CREATE
                    .key(self.key(new.family))
                    .arg(new.subject)
                    .arg(new.token.to_hex())
                    .arg(new.absolute_expiry_ms)
                    .arg(new.idle_expiry_ms),
            )
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn rotate(&self, rotation: &Rotation<'_>) -> Result<RotateOutcome, AuthError> {
        let reply: Vec<String> = self
            .conn
            .invoke(
                ROTATE
                    .key(self.key(rotation.family))
                    .arg(rotation.presented.to_hex())
                    .arg(rotation.next.to_hex())
                    .arg(rotation.now_ms)
                    .arg(rotation.idle_expiry_ms)
                    .arg(MAX_USED_TOKENS),
            )
            .await
            .map_err(store_error)?;
        let corrupt = || AuthError::Config("refresh token store: unexpected script reply".into());
        let mut reply = reply.into_iter();
        Ok(match reply.next().as_deref() {
            Some("rotated") => {
                let subject = reply.next().ok_or_else(corrupt)?;
                let generation = reply.next().and_then(|g| g.parse().ok());
                let absolute = reply.next().and_then(|a| a.parse().ok());
                RotateOutcome::Rotated {
                    subject,
                    generation: generation.ok_or_else(corrupt)?,
                    absolute_expiry_ms: absolute.ok_or_else(corrupt)?,
                }
            }
            Some("reused") => RotateOutcome::Reused {
                subject: reply.next().ok_or_else(corrupt)?,
            },
            Some("unknown") => RotateOutcome::Unknown,
            Some("expired") => RotateOutcome::Expired,
            Some("revoked") => RotateOutcome::Revoked,
            _ => return Err(corrupt()),
        })
    }

    async fn revoke(&self, family: &str) -> Result<bool, AuthError> {
        let revoked: i64 = self
            .conn
            .invoke(&REVOKE.key(self.key(family)))
            .await
            .map_err(store_error)?;
        Ok(revoked == 1)
    }
}
