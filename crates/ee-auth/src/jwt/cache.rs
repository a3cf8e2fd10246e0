//! The verified-token cache: a token seen before skips its signature check.
//!
//! Keyed by the SHA-256 of the token's signature segment; the entry keeps the
//! signed part (`header.payload`, which is no credential without its
//! signature) and a hit requires it to be byte-for-byte the presented one,
//! so a hit means the very same token. The token itself is never kept: the
//! signature is stored only as its digest. Hashing the signature rather than
//! the whole token is 2 to 8 times less to hash on every request.
//!
//! Bounded in entries (moka's TinyLFU admission and eviction), and no entry
//! outlives its token's `exp`: moka expires it then, and a hit is checked
//! against the verifier's clock anyway, so a moved test clock is honoured too.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::Gauge;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use ee_core::Clock;

use crate::Identity;
use crate::jwt::verifier::TimeSource;

/// The SHA-256 of a token's signature segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct TokenDigest([u8; 32]);

impl TokenDigest {
    /// The digest of `token`'s signature (the text after its last dot), and
    /// the signed part before that dot; `None` for a token without a dot.
    #[inline]
    pub(crate) fn of(token: &str) -> Option<(Self, &str)> {
        let dot = token.rfind('.')?;
        let digest = Self(Sha256::digest(&token.as_bytes()[dot + 1..]).into());
        Some((digest, &token[..dot]))
    }
}

impl Hash for TokenDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniform: eight of its bytes are a hash.
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_ne_bytes(word));
    }
}

/// A hasher that hands on the one `u64` a [`TokenDigest`] writes.
#[derive(Clone, Copy, Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not reached for TokenDigest; kept correct for any other key.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for DigestHasher {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

/// A verified token: its signed part, who it is and until when (Unix seconds).
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) signed: Arc<str>,
    pub(crate) identity: Identity,
    pub(crate) exp: u64,
    /// The verifier's key epoch when verified (see `JwksSource::removals`).
    pub(crate) key_epoch: u64,
}

struct UntilExp {
    time: TimeSource,
    leeway_secs: u64,
}

impl moka::Expiry<TokenDigest, Entry> for UntilExp {
    fn expire_after_create(&self, _: &TokenDigest, entry: &Entry, _: Instant) -> Option<Duration> {
        let until_ms = entry
            .exp
            .saturating_add(self.leeway_secs)
            .saturating_mul(1000);
        Some(Duration::from_millis(
            until_ms.saturating_sub(self.time.unix_ms()),
        ))
    }
}

/// How often (in inserts) the entry gauge is refreshed.
const GAUGE_EVERY: u64 = 64;

/// The bounded cache of verified tokens.
pub(crate) struct TokenCache {
    cache: Cache<TokenDigest, Entry, DigestHasher>,
    inserts: AtomicU64,
    gauge: Gauge,
}

impl TokenCache {
    pub(crate) fn new(capacity: u64, time: TimeSource, leeway_secs: u64) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(UntilExp { time, leeway_secs })
            .build_with_hasher(DigestHasher::default());
        Arc::new(Self {
            cache,
            inserts: AtomicU64::new(0),
            gauge: metrics::gauge!(crate::METRIC_TOKEN_CACHE_ENTRIES),
        })
    }

    /// The entry of the token whose signature digest is `digest` and signed
    /// part is `signed`, if cached.
    #[inline]
    pub(crate) fn get(&self, digest: &TokenDigest, signed: &str) -> Option<Entry> {
        self.cache.get(digest).filter(|e| *e.signed == *signed)
    }

    pub(crate) fn insert(&self, digest: TokenDigest, entry: Entry) {
        self.cache.insert(digest, entry);
        // The gauge follows inserts (misses, each after a signature check),
        // never hits; moka's count is approximate anyway.
        let n = self.inserts.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(GAUGE_EVERY) {
            self.publish();
        }
    }

    pub(crate) fn remove(&self, digest: &TokenDigest) {
        self.cache.invalidate(digest);
    }

    /// Sets the entry gauge to moka's (approximate) count.
    pub(crate) fn publish(&self) {
        self.gauge.set(self.cache.entry_count() as f64);
    }

    /// Entries held (approximate until pending maintenance ran).
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }
}
