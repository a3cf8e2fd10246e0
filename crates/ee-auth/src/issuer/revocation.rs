//! `RevocationList`: revoked token ids (`jti`), answered locally on every
//! request, shared through Redis when backed by it.
//!
//! With Redis, a revocation is written to a sorted set (`jti` scored by its
//! expiry, the whole list) and appended to a stream (the change feed), both in
//! one script, then kept locally. Every instance's background task reads the
//! feed every `poll_interval_ms` (default 250 ms) and re-reads the whole set
//! every `resync_interval_secs` (default 60 s) and after any error, so all
//! instances converge: a revocation reaches every instance within about one
//! poll interval plus a round trip (well under a second while Redis is up).
//! While Redis is down, `is_revoked` answers from the local copy and
//! `revoke` fails with [`AuthError::Unavailable`].

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use ee_core::{Clock, SystemClock};

use super::config::RevocationConfig;
use crate::{AuthError, RevocationCheck};

/// Longest `jti` accepted, in bytes.
const MAX_JTI_BYTES: usize = 256;

type Entries = HashMap<Box<str>, u64, foldhash::fast::RandomState>;

/// Revoked token ids, each until its token's expiry. Implements
/// [`RevocationCheck`]: a read-locked map lookup, no I/O.
///
/// Bounded: an entry is dropped when its token expires (it is useless after),
/// no entry may outlive `max_ttl_secs` (a longer-lived token cannot be revoked:
/// [`AuthError::Limit`]), and at most `max_entries` are held; a
/// revocation beyond that is refused with [`AuthError::Unavailable`] (room
/// comes back as tokens expire). Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), ee_auth::AuthError> {
/// use ee_auth::{RevocationCheck, RevocationList};
///
/// let revoked = RevocationList::builder().memory();
/// let exp = ee_core::unix_ms() / 1000 + 900;
/// revoked.revoke("jti-1", exp).await?;
/// assert!(revoked.is_revoked("jti-1"));
/// assert!(!revoked.is_revoked("jti-2"));
/// # Ok(()) }
/// ```
pub struct RevocationList<C: Clock = SystemClock> {
    inner: Arc<Inner<C>>,
}

impl<C: Clock> Clone for RevocationList<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<C> {
    entries: RwLock<Entries>,
    cfg: RevocationConfig,
    clock: C,
    #[cfg(feature = "redis")]
    redis: Option<redis_sync::Shared>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<C> Drop for Inner<C> {
    fn drop(&mut self) {
        if let Some(task) = self.task.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

impl<C: Clock> fmt::Debug for RevocationList<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationList")
            .field("entries", &self.len())
            .field("max_entries", &self.inner.cfg.max_entries)
            .field("redis", &self.is_redis())
            .finish()
    }
}

/// Builds a [`RevocationList`], in memory or backed by Redis.
#[derive(Debug, Clone)]
#[must_use]
pub struct RevocationListBuilder<C: Clock = SystemClock> {
    cfg: RevocationConfig,
    clock: C,
}

impl RevocationList {
    /// A builder with the default [`RevocationConfig`].
    pub fn builder() -> RevocationListBuilder {
        RevocationListBuilder {
            cfg: RevocationConfig::default(),
            clock: SystemClock,
        }
    }
}

impl<C: Clock> RevocationListBuilder<C> {
    /// Applies `cfg`, validating it.
    pub fn config(mut self, cfg: &RevocationConfig) -> Result<Self, AuthError> {
        let bad = |what: &str| Err(AuthError::Config(format!("revocation: {what}")));
        if cfg.max_entries == 0 {
            return bad("`max_entries` must be at least 1");
        }
        if cfg.max_ttl_secs == 0 {
            return bad("`max_ttl_secs` must be at least 1");
        }
        if cfg.poll_interval_ms == 0 || cfg.resync_interval_secs == 0 {
            return bad("`poll_interval_ms` and `resync_interval_secs` must be at least 1");
        }
        if cfg.namespace.is_empty() {
            return bad("`namespace` must not be empty");
        }
        self.cfg = cfg.clone();
        Ok(self)
    }

    /// Reads time from `clock`.
    pub fn clock<C2: Clock>(self, clock: C2) -> RevocationListBuilder<C2> {
        RevocationListBuilder {
            cfg: self.cfg,
            clock,
        }
    }

    fn inner(self) -> Inner<C> {
        Inner {
            entries: RwLock::default(),
            cfg: self.cfg,
            clock: self.clock,
            #[cfg(feature = "redis")]
            redis: None,
            task: Mutex::new(None),
        }
    }

    /// A list in this process only.
    pub fn memory(self) -> RevocationList<C> {
        RevocationList {
            inner: Arc::new(self.inner()),
        }
    }

    /// A list shared through Redis: it reads the current list once (failing
    /// with [`AuthError::Unavailable`] if Redis cannot be reached), then keeps
    /// up in a background task that ends when the last clone is dropped.
    /// Needs a tokio runtime.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(self, conn: ee_core::RedisConn) -> Result<RevocationList<C>, AuthError> {
        let mut inner = self.inner();
        let shared = redis_sync::Shared::new(conn, &inner.cfg.namespace);
        inner.redis = Some(shared);
        let list = RevocationList {
            inner: Arc::new(inner),
        };
        let cursor = list.full_sync().await?;
        let task = tokio::spawn(redis_sync::run(Arc::downgrade(&list.inner), cursor));
        *list.inner.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        Ok(list)
    }
}

impl<C: Clock> RevocationList<C> {
    fn now_secs(&self) -> u64 {
        self.inner.clock.unix_ms() / 1000
    }

    /// Revokes `jti` until `until_unix_secs` (its token's `exp`). Already-expired
    /// tokens need no entry and are accepted as they are; a token that lives
    /// longer than `max_ttl_secs` from now is refused with [`AuthError::Limit`]
    /// (an entry dropped before the token expires would let it back in).
    ///
    /// With Redis, the revocation is written there first (and fails with
    /// [`AuthError::Unavailable`] if it cannot be), then applied locally at
    /// once; other instances see it on their next poll.
    pub async fn revoke(&self, jti: &str, until_unix_secs: u64) -> Result<(), AuthError> {
        if jti.is_empty() || jti.len() > MAX_JTI_BYTES {
            return Err(AuthError::invalid_token("malformed token id"));
        }
        let now = self.now_secs();
        if until_unix_secs <= now {
            return Ok(());
        }
        // An entry capped short of the token's exp would make the token valid
        // again when it lapses: refuse instead, naming the setting.
        let max_ttl = self.inner.cfg.max_ttl_secs;
        if until_unix_secs - now > max_ttl {
            return Err(AuthError::Limit(
                format!(
                    "a token that lives {} s more cannot be revoked: revocation.max_ttl_secs is {max_ttl}; \
                     raise it to the longest token lifetime",
                    until_unix_secs - now
                )
                .into(),
            ));
        }
        let until = until_unix_secs;
        #[cfg(feature = "redis")]
        if let Some(redis) = &self.inner.redis {
            redis.revoke(jti, until, now, &self.inner.cfg).await?;
        }
        if self.insert(jti, until, now) {
            Ok(())
        } else {
            Err(full())
        }
    }

    /// Adds an entry locally; false when the list is full of live entries.
    fn insert(&self, jti: &str, until: u64, now: u64) -> bool {
        let mut entries = self.write();
        if let Some(existing) = entries.get_mut(jti) {
            *existing = (*existing).max(until);
            return true;
        }
        if entries.len() >= self.inner.cfg.max_entries {
            entries.retain(|_, until| *until > now);
            if entries.len() >= self.inner.cfg.max_entries {
                return false;
            }
        }
        entries.insert(jti.into(), until);
        true
    }

    /// Drops the entries whose tokens have expired.
    pub fn purge_expired(&self) {
        let now = self.now_secs();
        self.write().retain(|_, until| *until > now);
    }

    /// Entries held (expired ones included until purged).
    pub fn len(&self) -> usize {
        self.inner
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the list is shared through Redis.
    pub fn is_redis(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.inner.redis.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.inner
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }
}

fn full() -> AuthError {
    AuthError::Unavailable {
        what: "revocation list (full)".into(),
        source: None,
    }
}

impl<C: Clock> RevocationCheck for RevocationList<C> {
    fn is_revoked(&self, jti: &str) -> bool {
        let now = self.now_secs();
        self.inner
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(jti)
            .is_some_and(|until| *until > now)
    }
}

#[cfg(feature = "redis")]
mod redis_sync {
    //! The Redis side: one script per revocation, a poll of the change feed,
    //! a periodic full read.

    use std::sync::{LazyLock, Weak};
    use std::time::Duration;

    use ee_core::{KeySpace, LogThrottle, RedisConn, RedisError, Script};

    use super::*;

    /// KEYS: set, feed. ARGV: jti, until, now, max entries, max ttl (s).
    /// 1 = stored, 0 = full.
    static REVOKE: LazyLock<Script> = LazyLock::new(|| {
        Script::new(
            "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
             if not redis.call('ZSCORE', KEYS[1], ARGV[1])
                and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
               return 0
             end
             redis.call('ZADD', KEYS[1], 'GT', ARGV[2], ARGV[1])
             redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'j', ARGV[1], 'u', ARGV[2])
             redis.call('EXPIRE', KEYS[1], ARGV[5])
             redis.call('EXPIRE', KEYS[2], ARGV[5])
             return 1",
        )
    });

    /// Entries read per round trip.
    const PAGE: usize = 1000;

    pub(super) struct Shared {
        conn: RedisConn,
        set: String,
        feed: String,
    }

    fn redis_error(e: RedisError) -> AuthError {
        if e.is_unavailable() {
            AuthError::unavailable("revocation list", e)
        } else {
            AuthError::Config(format!("revocation list: {e}"))
        }
    }

    impl Shared {
        pub(super) fn new(conn: RedisConn, namespace: &str) -> Self {
            let keys = KeySpace::new("auth");
            Self {
                set: keys.tagged(&["revoked", namespace], &["set"]),
                feed: keys.tagged(&["revoked", namespace], &["feed"]),
                conn,
            }
        }

        pub(super) async fn revoke(
            &self,
            jti: &str,
            until: u64,
            now: u64,
            cfg: &RevocationConfig,
        ) -> Result<(), AuthError> {
            let stored: i64 = self
                .conn
                .invoke(
                    REVOKE
                        .key(&self.set)
                        .key(&self.feed)
                        .arg(jti)
                        .arg(until)
                        .arg(now)
                        .arg(cfg.max_entries)
                        .arg(cfg.max_ttl_secs),
                )
                .await
                .map_err(redis_error)?;
            if stored == 1 { Ok(()) } else { Err(full()) }
        }

        /// The id of the feed's newest entry (`0-0` when empty).
        async fn feed_head(&self) -> Result<String, AuthError> {
            let newest: Vec<(String, Vec<String>)> = self
                .conn
                .query(
                    redis::cmd("XREVRANGE")
                        .arg(&self.feed)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1),
                )
                .await
                .map_err(redis_error)?;
            Ok(newest
                .into_iter()
                .next()
                .map_or_else(|| "0-0".to_owned(), |(id, _)| id))
        }

        /// Every live entry, page by page, at most `max` of them.
        async fn all(&self, now: u64, max: usize) -> Result<Vec<(String, u64)>, AuthError> {
            let mut all = Vec::new();
            while all.len() < max {
                let page: Vec<(String, f64)> = self
                    .conn
                    .query(
                        redis::cmd("ZRANGE")
                            .arg(&self.set)
                            .arg(format!("({now}"))
                            .arg("+inf")
                            .arg("BYSCORE")
                            .arg("LIMIT")
                            .arg(all.len())
                            .arg(PAGE.min(max - all.len()))
                            .arg("WITHSCORES"),
                    )
                    .await
                    .map_err(redis_error)?;
                let done = page.len() < PAGE;
                all.extend(page.into_iter().map(|(jti, until)| (jti, until as u64)));
                if done {
                    break;
                }
            }
            Ok(all)
        }

        /// Feed entries after `cursor`: (id, jti, until).
        async fn changes(&self, cursor: &str) -> Result<Vec<(String, String, u64)>, AuthError> {
            let page: Vec<(String, Vec<String>)> = self
                .conn
                .query(
                    redis::cmd("XRANGE")
                        .arg(&self.feed)
                        .arg(format!("({cursor}"))
                        .arg("+")
                        .arg("COUNT")
                        .arg(PAGE),
                )
                .await
                .map_err(redis_error)?;
            Ok(page
                .into_iter()
                .filter_map(|(id, fields)| {
                    let field = |name: &str| {
                        fields
                            .chunks_exact(2)
                            .find(|kv| kv[0] == name)
                            .map(|kv| kv[1].clone())
                    };
                    let jti = field("j")?;
                    let until = field("u")?.parse().ok()?;
                    Some((id, jti, until))
                })
                .collect())
        }
    }

    impl<C: Clock> RevocationList<C> {
        fn shared(&self) -> &Shared {
            self.inner
                .redis
                .as_ref()
                .expect("a Redis-backed list has its Redis side")
        }

        /// Replaces the local entries by Redis's; the feed cursor to go on from.
        pub(super) async fn full_sync(&self) -> Result<String, AuthError> {
            let shared = self.shared();
            // The cursor first: what lands in between is read twice, harmlessly.
            let cursor = shared.feed_head().await?;
            let now = self.now_secs();
            let all = shared.all(now, self.inner.cfg.max_entries).await?;
            let mut fresh = Entries::default();
            fresh.extend(all.into_iter().map(|(jti, until)| (jti.into(), until)));
            *self.write() = fresh;
            Ok(cursor)
        }

        /// Applies the feed after `cursor`; the new cursor.
        async fn poll(&self, mut cursor: String) -> Result<String, AuthError> {
            loop {
                let changes = self.shared().changes(&cursor).await?;
                let more = changes.len() == PAGE;
                let now = self.now_secs();
                for (id, jti, until) in changes {
                    if until > now {
                        self.insert(&jti, until, now);
                    }
                    cursor = id;
                }
                if !more {
                    return Ok(cursor);
                }
            }
        }
    }

    /// The background task: poll, resync now and then, stop when the list is gone.
    pub(super) async fn run<C: Clock>(list: Weak<Inner<C>>, mut cursor: String) {
        let Some(cfg) = list.upgrade().map(|inner| inner.cfg.clone()) else {
            return;
        };
        let poll = Duration::from_millis(cfg.poll_interval_ms);
        let polls_per_resync =
            (cfg.resync_interval_secs.saturating_mul(1000) / cfg.poll_interval_ms).max(1);
        let errors = LogThrottle::new(Duration::from_secs(10));
        let mut polls = 0u64;
        let mut resync = false;
        loop {
            tokio::time::sleep(poll).await;
            let Some(inner) = list.upgrade() else { return };
            let list = RevocationList { inner };
            polls += 1;
            if polls.is_multiple_of(polls_per_resync) {
                resync = true;
            }
            let step = if resync {
                list.full_sync().await
            } else {
                list.poll(cursor.clone()).await
            };
            match step {
                Ok(next) => {
                    cursor = next;
                    resync = false;
                }
                Err(error) => {
                    resync = true;
                    if let Some(suppressed) = errors.check() {
                        tracing::warn!(
                            %error,
                            suppressed,
                            "revocation list: cannot read Redis; answering from the local copy"
                        );
                    }
                }
            }
        }
    }
}
