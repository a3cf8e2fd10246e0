//! Records in this process: the embedded default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::{Clock, SystemClock};

use crate::store::{Begin, Fingerprint, IdempotencyStore, Record, StoreError, StoredResponse};

/// Records kept in this process, expiring by the given clock. Requests to
/// other instances do not see them: use `RedisStore` behind a load balancer.
/// Expired records are swept once the writes since the last sweep reach the
/// number of records kept (at least 1024): amortised constant time per write.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore<C = SystemClock> {
    clock: C,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<String, (Record, Instant)>,
    writes_since_sweep: usize,
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<C: Clock> MemoryStore<C> {
    /// A store on another clock (`ee_testing::ManualClock` in tests).
    pub fn with_clock(clock: C) -> Self {
        Self {
            clock,
            inner: Arc::default(),
        }
    }

    /// Records currently kept (expired ones may linger until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What a request would find at `key` (an unexpired record), without
    /// taking it.
    pub(crate) fn peek(&self, key: &str) -> Option<Begin> {
        let now = self.clock.now();
        match self.lock().records.get(key) {
            Some((record, expires)) if *expires > now => Some(record.clone().into()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, inner: &mut Inner, key: &str, record: Record, ttl: Duration, now: Instant) {
        inner.writes_since_sweep += 1;
        if inner.writes_since_sweep >= inner.records.len().max(1024) {
            inner.writes_since_sweep = 0;
            inner.records.retain(|_, (_, expires)| *expires > now);
        }
        inner.records.insert(key.to_owned(), (record, now + ttl));
    }
}

impl<C: Clock> IdempotencyStore for MemoryStore<C> {
    async fn begin(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        lease: Duration,
    ) -> Result<Begin, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.records.get(key) {
            Some((record, expires)) if *expires > now => Ok(record.clone().into()),
            _ => {
                let record = Record::InFlight {
                    fingerprint: *fingerprint,
                    token,
                };
                self.write(&mut inner, key, record, lease, now);
                Ok(Begin::Acquired)
            }
        }
    }

    async fn complete(
        &self,
        key: &str,
        fingerprint: &Fingerprint,
        token: u64,
        response: &StoredResponse,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if let Some((Record::InFlight { token: held, .. }, expires)) = inner.records.get(key)
            && *held == token
            && *expires > now
        {
            let record = Record::Completed {
                fingerprint: *fingerprint,
                response: response.clone(),
            };
            self.write(&mut inner, key, record, ttl, now);
            return Ok(true);
        }
        Ok(false)
    }

    async fn extend(&self, key: &str, token: u64, lease: Duration) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if let Some((Record::InFlight { token: held, .. }, expires)) = inner.records.get_mut(key)
            && *held == token
            && *expires > now
        {
            *expires = now + lease;
            return Ok(true);
        }
        Ok(false)
    }

    async fn release(&self, key: &str, token: u64) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some((Record::InFlight { token: held, .. }, _)) = inner.records.get(key)
            && *held == token
        {
            inner.records.remove(key);
        }
        Ok(())
    }
}
