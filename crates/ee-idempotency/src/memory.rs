//! Records in this process: the embedded default.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::{Clock, SystemClock};

use crate::store::{Begin, Fingerprint, IdempotencyStore, Record, StoreError, StoredResponse};

/// The default bound of a [`MemoryStore`]: 64 MiB of keys, fingerprints and
/// stored responses.
pub const DEFAULT_MEMORY_MAX_BYTES: usize = 64 << 20;

/// What a record costs besides its key and stored response (fingerprint,
/// token, expiry, map overhead), for the byte bound.
const RECORD_OVERHEAD: usize = 96;

/// Records kept in this process, expiring by the given clock. Requests to
/// other instances do not see them: use `RedisStore` behind a load balancer.
/// Expired records are swept once the writes since the last sweep reach the
/// number of records kept (at least 1024): amortised constant time per write.
///
/// Bounded in bytes (keys, fingerprints, stored responses: [`DEFAULT_MEMORY_MAX_BYTES`]
/// unless [`with_max_bytes`](Self::with_max_bytes)). When full, expired records
/// are swept first; if that frees nothing, a new key is refused as an outage
/// ([`StoreError::Unavailable`], so the layer's `on_backend_error` decides:
/// 503 by default) and kept records are never evicted early, so no retry ever
/// runs twice. Requests already admitted still store their response, so the
/// bound can be passed by at most one response per request in flight.
#[derive(Debug, Clone)]
pub struct MemoryStore<C = SystemClock> {
    clock: C,
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug)]
struct Inner {
    records: HashMap<String, (Record, Instant)>,
    writes_since_sweep: usize,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            records: HashMap::new(),
            writes_since_sweep: 0,
            bytes: 0,
            max_bytes: DEFAULT_MEMORY_MAX_BYTES,
        }
    }
}

impl<C: Default> Default for MemoryStore<C> {
    fn default() -> Self {
        Self {
            clock: C::default(),
            inner: Arc::default(),
        }
    }
}

impl MemoryStore {
    /// A store on the system clock.
    pub fn new() -> Self {
        Self::default()
    }
}

/// What `record` under `key` counts against the byte bound.
fn cost(key: &str, record: &Record) -> usize {
    RECORD_OVERHEAD
        + key.len()
        + match record {
            Record::InFlight { .. } => 0,
            Record::Completed { response, .. } => {
                response.body.len()
                    + response
                        .headers
                        .iter()
                        .map(|(n, v)| n.as_str().len() + v.len() + 32)
                        .sum::<usize>()
            }
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

    /// Bounds the store to `max_bytes` of records (default [`DEFAULT_MEMORY_MAX_BYTES`]).
    pub fn with_max_bytes(self, max_bytes: usize) -> Self {
        self.lock().max_bytes = max_bytes;
        self
    }

    /// Bytes the kept records count against the bound.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
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
            Self::sweep(inner, now);
        }
        let added = cost(key, &record);
        if let Some((old, _)) = inner.records.insert(key.to_owned(), (record, now + ttl)) {
            inner.bytes -= cost(key, &old);
        }
        inner.bytes += added;
    }

    fn sweep(inner: &mut Inner, now: Instant) {
        inner.writes_since_sweep = 0;
        let mut freed = 0;
        inner.records.retain(|key, (record, expires)| {
            let keep = *expires > now;
            if !keep {
                freed += cost(key, record);
            }
            keep
        });
        inner.bytes -= freed;
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
                if inner.bytes >= inner.max_bytes {
                    Self::sweep(&mut inner, now);
                    if inner.bytes >= inner.max_bytes {
                        return Err(StoreError::Unavailable(format!(
                            "the in-memory idempotency store is full ({} of {} bytes): \
                             raise MemoryStore::with_max_bytes or use RedisStore",
                            inner.bytes, inner.max_bytes
                        )));
                    }
                }
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
            && let Some((old, _)) = inner.records.remove(key)
        {
            inner.bytes -= cost(key, &old);
        }
        Ok(())
    }
}
