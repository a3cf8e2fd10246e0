//! The shared store on Redis (standalone or Cluster).

use std::sync::Arc;

use ee_core::{LogThrottle, RedisConn, RedisError, Script, unix_ms};
use ee_serialize::ZstdCodec;
use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{Entry, decode, encode};
use crate::error::CacheError;
use crate::store::{CacheStore, Found, Level};

/// Adds a key to a tag's set and keeps the set alive at least as long as the
/// key (a new set has no TTL: `PTTL` is -1).
const TAG_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
";

/// Takes a tag's set: its members, and the set is gone.
const TAG_TAKE: &str = r"
local members = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
";

/// Entries in Redis: one string key per entry (`SET … PX`, the TTL is the end
/// of the stale window), one set per tag listing its keys.
///
/// Values are JSON (zstd-compressed above 1 KiB by default), framed with their
/// lifetimes and tags, so every instance reads the same freshness. Bytes that
/// do not decode (corrupt, or written by something else) read as a miss, are
/// logged (at most once per 10 s) and deleted.
///
/// On a Cluster every command touches one key, so entries spread over the
/// slots; `get_many` sends its `GET`s concurrently on the multiplexed
/// connection (one `MGET` on standalone Redis). A tag's set and its keys live
/// in different slots, so a write racing the invalidation of its tag may
/// survive it (until its TTL).
#[derive(Clone)]
pub struct RedisStore {
    conn: RedisConn,
    codec: ZstdCodec,
    max_value_bytes: usize,
    tag_add: Arc<Script>,
    tag_take: Arc<Script>,
    corrupt: Arc<LogThrottle>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("conn", &self.conn)
            .field("codec", &self.codec)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

fn unavailable(e: RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

impl RedisStore {
    /// A store on `conn` (whose per-call timeout bounds every operation).
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            codec: ZstdCodec::new(),
            max_value_bytes: 1 << 20,
            tag_add: Arc::new(Script::new(TAG_ADD)),
            tag_take: Arc::new(Script::new(TAG_TAKE)),
            corrupt: Arc::new(LogThrottle::new(std::time::Duration::from_secs(10))),
        }
    }

    /// Compresses values whose JSON is longer than `bytes` (default 1024).
    pub fn zstd_above(mut self, bytes: usize) -> Self {
        self.codec = self.codec.min_size(bytes);
        self
    }

    /// How values are compressed: ee-serialize's [`ZstdCodec`], e.g. with a
    /// [`Dictionary`](ee_serialize::Dictionary) trained on your values (many
    /// small JSON values compress ~4x better with one; every instance must
    /// use the same dictionary bytes).
    pub fn codec(mut self, codec: ZstdCodec) -> Self {
        self.codec = codec;
        self
    }

    /// Refuses encoded values larger than `bytes` (default 1 MiB).
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The connection.
    pub fn conn(&self) -> &RedisConn {
        &self.conn
    }

    /// Decodes `bytes` read under `key`; a corrupt entry is logged, deleted
    /// and read as absent.
    pub(crate) async fn decode_or_drop<V: DeserializeOwned>(
        &self,
        key: &str,
        bytes: Option<Vec<u8>>,
    ) -> Option<(Entry<V>, Vec<String>)> {
        let bytes = bytes?;
        match decode(&bytes, &self.codec, self.max_value_bytes) {
            Ok(decoded) => Some(decoded),
            Err(e) => {
                if let Some(suppressed) = self.corrupt.check() {
                    tracing::warn!(key, error = %e, suppressed, "corrupt cache entry read as a miss and deleted");
                }
                let _ = self.conn.query::<()>(redis::cmd("DEL").arg(key)).await;
                None
            }
        }
    }

    /// The entry and its tags under `key`.
    pub(crate) async fn fetch<V: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(Entry<V>, Vec<String>)>, CacheError> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .query(redis::cmd("GET").arg(key))
            .await
            .map_err(unavailable)?;
        Ok(self.decode_or_drop(key, bytes).await)
    }

    /// The entries and tags under `keys`.
    pub(crate) async fn fetch_many<V: DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<(Entry<V>, Vec<String>)>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<Option<Vec<u8>>> = if self.conn.is_cluster() {
            join_all(keys.iter().map(|k| async move {
                self.conn
                    .query::<Option<Vec<u8>>>(redis::cmd("GET").arg(k))
                    .await
            }))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .map_err(unavailable)?
        } else {
            self.conn
                .query(redis::cmd("MGET").arg(keys))
                .await
                .map_err(unavailable)?
        };
        let mut out = Vec::with_capacity(keys.len());
        for (key, bytes) in keys.iter().zip(raw) {
            out.push(self.decode_or_drop(key, bytes).await);
        }
        Ok(out)
    }

    /// Removes every key recorded under `tag`; returns them.
    pub(crate) async fn take_tag(&self, tag: &str) -> Result<Vec<String>, CacheError> {
        let keys: Vec<String> = self
            .conn
            .invoke(&self.tag_take.key(tag))
            .await
            .map_err(unavailable)?;
        self.delete_keys(&keys).await?;
        Ok(keys)
    }

    async fn delete_keys(&self, keys: &[String]) -> Result<(), CacheError> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.conn.is_cluster() {
            for result in
                join_all(keys.iter().map(|k| async move {
                    self.conn.query::<()>(redis::cmd("UNLINK").arg(k)).await
                }))
                .await
            {
                result.map_err(unavailable)?;
            }
            Ok(())
        } else {
            self.conn
                .query::<()>(redis::cmd("UNLINK").arg(keys))
                .await
                .map_err(unavailable)
        }
    }
}

impl<V> CacheStore<V> for RedisStore
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn get(&self, key: &str) -> Result<Option<Found<V>>, CacheError> {
        Ok(self.fetch(key).await?.map(|(entry, _)| Found {
            entry,
            level: Level::L2,
        }))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Found<V>>>, CacheError> {
        Ok(self
            .fetch_many(keys)
            .await?
            .into_iter()
            .map(|f| {
                f.map(|(entry, _)| Found {
                    entry,
                    level: Level::L2,
                })
            })
            .collect())
    }

    async fn set(&self, key: &str, entry: Entry<V>, tags: &[String]) -> Result<(), CacheError> {
        let ttl = entry.remaining_ms(unix_ms());
        if ttl == 0 {
            return Ok(());
        }
        let bytes = encode(&entry, tags, &self.codec, self.max_value_bytes)?;
        self.conn
            .query::<()>(redis::cmd("SET").arg(key).arg(bytes).arg("PX").arg(ttl))
            .await
            .map_err(unavailable)?;
        for result in join_all(tags.iter().map(|tag| {
            let mut call = self.tag_add.key(tag.as_str());
            call.arg(key).arg(ttl);
            async move { self.conn.invoke::<i64>(&call).await }
        }))
        .await
        {
            result.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.delete_keys(&[key.to_owned()]).await
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<(), CacheError> {
        self.take_tag(tag).await.map(drop)
    }

    fn deepest_level(&self) -> Level {
        Level::L2
    }
}
