//! The positive cache: keys that verified recently, so a hot key does not
//! cost a Redis or SQL round trip on every request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use subtle::ConstantTimeEq;

use super::format::KeyHash;
use crate::Identity;

struct Entry {
    /// The stored hash: a hit still needs the presented secret to match it.
    hash: KeyHash,
    identity: Identity,
    /// When the entry was made (Unix ms): it is fresh for the TTL.
    cached_at_ms: u64,
    /// The key's own expiry (Unix ms): never served past it.
    expires_at_ms: Option<u64>,
    /// The last `last_used` written for this key by this process (Unix ms).
    last_touch_ms: AtomicU64,
}

type Entries = HashMap<Box<str>, Entry, foldhash::fast::RandomState>;

/// What a hit gives: the identity, and whether `last_used` is due.
pub(crate) struct Hit {
    pub(crate) identity: Identity,
    pub(crate) touch_due: bool,
}

/// Verified keys by lookup id: bounded in entries, each fresh for `ttl` and
/// never past its key's expiry. Time is the clock's Unix milliseconds (one
/// cheap read per verification); a wall clock stepped back makes entries
/// stale rather than older-looking-younger. Only keys that verified against the store
/// enter, so a client cannot fill it with made-up keys.
pub(crate) struct VerifiedCache {
    ttl_ms: u64,
    capacity: usize,
    entries: RwLock<Entries>,
}

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            capacity,
            entries: RwLock::default(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        // Each change is one map call: a poisoned lock still holds a sound map.
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    fn is_fresh(&self, entry: &Entry, now_ms: u64) -> bool {
        now_ms >= entry.cached_at_ms
            && now_ms - entry.cached_at_ms < self.ttl_ms
            && entry.expires_at_ms.is_none_or(|at| now_ms < at)
    }

    /// The identity of `id` if it is cached, fresh, and `presented` (the
    /// hash of the presented secret) matches its hash, in constant time.
    /// `touch_every_ms` > 0 claims the `last_used` write when one is due.
    pub(crate) fn lookup(
        &self,
        id: &str,
        presented: &KeyHash,
        now_ms: u64,
        touch_every_ms: u64,
    ) -> Option<Hit> {
        let entries = self.read();
        let entry = entries.get(id)?;
        if !bool::from(entry.hash.ct_eq(presented)) || !self.is_fresh(entry, now_ms) {
            return None;
        }
        let touch_due = touch_every_ms > 0 && {
            let last = entry.last_touch_ms.load(Ordering::Relaxed);
            now_ms.saturating_sub(last) >= touch_every_ms
                && entry
                    .last_touch_ms
                    .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
        };
        Some(Hit {
            identity: entry.identity.clone(),
            touch_due,
        })
    }

    /// Remembers a key that just verified. When full, stale entries go
    /// first; if none are stale, the entry is not cached (the key still
    /// verifies, through the store).
    pub(crate) fn insert(
        &self,
        id: &str,
        hash: KeyHash,
        identity: Identity,
        expires_at_ms: Option<u64>,
        last_touch_ms: u64,
        now_ms: u64,
    ) {
        let mut entries = self.write();
        if entries.len() >= self.capacity && !entries.contains_key(id) {
            entries.retain(|_, e| self.is_fresh(e, now_ms));
            if entries.len() >= self.capacity {
                return;
            }
        }
        entries.insert(
            id.into(),
            Entry {
                hash,
                identity,
                cached_at_ms: now_ms,
                expires_at_ms,
                last_touch_ms: AtomicU64::new(last_touch_ms),
            },
        );
    }

    /// Forgets `id` (it was revoked here).
    pub(crate) fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    /// How many entries it holds (fresh or not yet swept).
    pub(crate) fn len(&self) -> usize {
        self.read().len()
    }
}
