//! `Cache<K, V, S>`: the typed API over any store.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ee_core::{KeySpace, LogThrottle, unix_ms};
use tokio::sync::watch;

use crate::config::CacheConfig;
use crate::entry::{Entry, Freshness};
use crate::error::CacheError;
use crate::key::{CacheKey, KeyWriter, push_escaped};
use crate::memory::MemoryStore;
use crate::metrics::CacheMetrics;
use crate::store::{CacheStore, Found};

/// A typed cache: `K` keys (see [`CacheKey`]), `V` values, kept in store `S`.
///
/// Cheap to clone (clones share everything). Reads never fail: a store that
/// cannot answer reads as a miss (counted and logged once per 10 s), and
/// `get_or_load` then asks the loader.
///
/// ```
/// use ee_cache::{Cache, MemoryStore};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let products: Cache<u64, String> = Cache::builder("products").build(MemoryStore::new()).unwrap();
/// let name = products
///     .get_or_load(&42, || async { Ok::<_, std::io::Error>(Some("teapot".to_owned())) })
///     .await
///     .unwrap();
/// assert_eq!(name.as_deref(), Some("teapot"));
/// assert_eq!(products.get(&42).await.as_deref(), Some("teapot"));
/// # });
/// ```
pub struct Cache<K: ?Sized, V, S = MemoryStore<V>> {
    shared: Arc<Shared<V, S>>,
    scope: Arc<Scope>,
    _key: PhantomData<fn(&K)>,
}

impl<K: ?Sized, V, S> Clone for Cache<K, V, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            scope: self.scope.clone(),
            _key: PhantomData,
        }
    }
}

impl<K: ?Sized, V, S> fmt::Debug for Cache<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.shared.name)
            .field("key_prefix", &self.scope.key_prefix)
            .finish_non_exhaustive()
    }
}

/// What every clone and tenant view shares.
struct Shared<V, S> {
    name: Arc<str>,
    store: S,
    config: CacheConfig,
    keys: KeySpace,
    /// Loads in flight, by full key: a `Flight<V, E>` for the loader's `E`.
    inflight: Mutex<HashMap<String, Arc<dyn InFlight>>>,
    metrics: CacheMetrics,
    store_errors: LogThrottle,
    _value: PhantomData<fn() -> V>,
}

/// The key and tag prefixes of one view (a tenant, a version).
struct Scope {
    /// Which view this is, for the thread's key buffer (never 0).
    id: u64,
    key_prefix: String,
    tag_prefix: String,
}

/// The outcome of one load, shared with the callers that waited for it.
type Outcome<V, E> = Option<Result<Option<V>, Arc<E>>>;

/// One load in flight: its outcome for the waiters, and whether a write of
/// the key since it started makes its result too old to store.
struct Flight<V, E> {
    tx: watch::Sender<Outcome<V, E>>,
    superseded: AtomicBool,
}

/// A flight whatever its loader's error type.
trait InFlight: Send + Sync {
    fn supersede(&self);
    fn as_any(&self) -> &(dyn Any + Send + Sync);
}

impl<V: Send + Sync + 'static, E: Send + Sync + 'static> InFlight for Flight<V, E> {
    fn supersede(&self) {
        self.superseded.store(true, Ordering::Release);
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// Builds a [`Cache`].
#[derive(Debug, Clone)]
pub struct CacheBuilder {
    name: String,
    config: CacheConfig,
}

impl Cache<(), ()> {
    /// Starts a cache called `name` (part of every key and metric label).
    pub fn builder(name: impl Into<String>) -> CacheBuilder {
        CacheBuilder {
            name: name.into(),
            config: CacheConfig::default(),
        }
    }
}

impl CacheBuilder {
    /// All options at once, from configuration (checked first).
    ///
    /// ```
    /// use ee_cache::{Cache, CacheConfig, MemoryStore};
    /// let config: CacheConfig = serde_json::from_str(r#"{ "ttl_ms": 60000 }"#).unwrap();
    /// let cache: Cache<u64, String> = Cache::builder("products")
    ///     .config(&config)?
    ///     .build(MemoryStore::new())?;
    /// # Ok::<(), ee_cache::CacheError>(())
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Config`] when a value is out of range (see
    /// [`CacheConfig::validate`]).
    pub fn config(mut self, config: &CacheConfig) -> Result<Self, CacheError> {
        config.validate()?;
        self.config = config.clone();
        Ok(self)
    }

    /// How long entries are fresh.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.config.ttl_ms = ttl.as_millis() as u64;
        self
    }

    /// Serve entries up to `stale` past their TTL while one background load
    /// refreshes them.
    pub fn stale_while_revalidate(mut self, stale: Duration) -> Self {
        self.config.stale_ms = stale.as_millis() as u64;
        self
    }

    /// Remember "not found" from the loader for `ttl`.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.config.negative_ttl_ms = Some(ttl.as_millis() as u64);
        self
    }

    /// The value schema version (part of every key).
    pub fn version(mut self, version: u32) -> Self {
        self.config.version = version;
        self
    }

    /// The cache, on `store`.
    ///
    /// # Errors
    /// [`CacheError::Config`] when an option is out of range or the name is
    /// empty.
    pub fn build<K: ?Sized, V, S>(self, store: S) -> Result<Cache<K, V, S>, CacheError>
    where
        V: Clone + Send + Sync + 'static,
        S: CacheStore<V>,
    {
        self.config.validate()?;
        if self.name.is_empty() {
            return Err(CacheError::Config("the cache name is empty".into()));
        }
        // Calibrate the clock every lookup reads now, not in the first request.
        unix_ms();
        crate::metrics::describe_metrics();
        let keys = KeySpace::new("cache");
        let shared = Arc::new(Shared {
            metrics: CacheMetrics::new(&self.name),
            name: self.name.into(),
            store,
            config: self.config,
            keys,
            inflight: Mutex::default(),
            store_errors: LogThrottle::new(Duration::from_secs(10)),
            _value: PhantomData,
        });
        let scope = Arc::new(Scope::new(&shared, ""));
        Ok(Cache {
            shared,
            scope,
            _key: PhantomData,
        })
    }
}

impl Scope {
    fn new<V, S>(shared: &Shared<V, S>, tenant: &str) -> Self {
        let version = format!("v{}", shared.config.version);
        let mut key_prefix = shared.keys.key(&[&shared.name, &version, tenant]);
        key_prefix.push(':');
        // Tags are not versioned: invalidating `product:42` reaches entries
        // written by every version of the code.
        let mut tag_prefix = shared.keys.key(&[&shared.name, "tag", tenant]);
        tag_prefix.push(':');
        static SCOPES: AtomicU64 = AtomicU64::new(1);
        Self {
            id: SCOPES.fetch_add(1, Ordering::Relaxed),
            key_prefix,
            tag_prefix,
        }
    }
}

/// The full key of a synchronous lookup, built without allocating: it keeps
/// the prefix of the view that used it last, so a run of lookups in one view
/// writes only the keys. Sound because keys only append (a [`KeyWriter`]
/// cannot touch what is before it) and a buffer is cut back to its owner's
/// prefix before each key.
struct KeyBuf {
    /// The [`Scope::id`] whose prefix `buf` starts with; 0: none.
    owner: u64,
    buf: String,
}

impl KeyBuf {
    const fn new() -> Self {
        Self {
            owner: 0,
            buf: String::new(),
        }
    }
}

thread_local! {
    static KEY_BUF: std::cell::RefCell<KeyBuf> = const { std::cell::RefCell::new(KeyBuf::new()) };
}

/// How a lookup came out.
enum Lookup<V> {
    Fresh(Option<V>),
    Stale(Option<V>),
    Miss,
}

impl<V> Lookup<V> {
    /// The value a `get` answers: fresh or stale alike.
    fn value(self) -> Option<V> {
        match self {
            Lookup::Fresh(v) | Lookup::Stale(v) => v,
            Lookup::Miss => None,
        }
    }
}

/// What the store said in place: the lookup, or the full key to ask it
/// with (it must be awaited), or nothing (the key is over its limit).
enum InPlace<V> {
    Answered(Lookup<V>),
    Ask(String),
    Failed,
}

impl<K, V, S> Cache<K, V, S>
where
    K: CacheKey + ?Sized,
    V: Clone + Send + Sync + 'static,
    S: CacheStore<V>,
{
    /// The cache's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.shared.store
    }

    /// A view of this cache for one tenant: its keys and tags are apart from
    /// every other tenant's (same store, same options).
    pub fn tenant(&self, tenant: &str) -> Self {
        Self {
            shared: self.shared.clone(),
            scope: Arc::new(Scope::new(&self.shared, tenant)),
            _key: PhantomData,
        }
    }

    /// The full key of `key` in this view, as the store sees it.
    pub fn full_key(&self, key: &K) -> Result<String, CacheError> {
        let mut out = String::with_capacity(self.scope.key_prefix.len() + 16);
        self.write_key(&mut out, key)?;
        Ok(out)
    }

    fn write_key(&self, out: &mut String, key: &K) -> Result<(), CacheError> {
        out.clear();
        out.push_str(&self.scope.key_prefix);
        key.write_key(&mut KeyWriter::new(out));
        self.check_key_len(out)
    }

    /// [`Cache::write_key`] into the thread's buffer, whose prefix is kept
    /// when this view wrote last.
    #[inline(always)]
    fn write_key_reusing<'b>(&self, buf: &'b mut KeyBuf, key: &K) -> Result<&'b str, CacheError> {
        let scope = &self.scope;
        if buf.owner == scope.id {
            buf.buf.truncate(scope.key_prefix.len());
        } else {
            buf.buf.clear();
            buf.buf.push_str(&scope.key_prefix);
            buf.owner = scope.id;
        }
        key.write_key(&mut KeyWriter::new(&mut buf.buf));
        self.check_key_len(&buf.buf)?;
        Ok(&buf.buf)
    }

    #[inline]
    fn check_key_len(&self, full: &str) -> Result<(), CacheError> {
        let max = self.shared.config.max_key_bytes;
        if full.len() > max {
            return Err(CacheError::KeyTooLong {
                size: full.len(),
                max,
            });
        }
        Ok(())
    }

    fn full_tags(&self, tags: &[&str]) -> Vec<String> {
        tags.iter()
            .map(|tag| {
                let mut full = self.scope.tag_prefix.clone();
                push_escaped(&mut full, tag);
                full
            })
            .collect()
    }

    /// The value under `key`: fresh, or stale within the stale-while-revalidate
    /// window. `None` on a miss, a remembered absence, or a failing store.
    pub async fn get(&self, key: &K) -> Option<V> {
        // An in-process store answers here, without a nested future.
        let now = unix_ms();
        match self.in_place(key, now) {
            InPlace::Answered(lookup) => lookup.value(),
            InPlace::Ask(full) => self.fetch(&full, now).await.ok().and_then(Lookup::value),
            InPlace::Failed => None,
        }
    }

    /// The values under `keys`, in order (one store round trip where it can).
    pub async fn get_many(&self, keys: &[&K]) -> Vec<Option<V>> {
        let mut full = Vec::with_capacity(keys.len());
        for key in keys {
            match self.full_key(key) {
                Ok(k) => full.push(k),
                // A key over the limit can never be stored: a miss.
                Err(_) => full.push(String::new()),
            }
        }
        let found = match self.shared.store.get_many(&full).await {
            Ok(found) => found,
            Err(e) => {
                self.store_failed("get_many", &e);
                return vec![None; keys.len()];
            }
        };
        let now = unix_ms();
        found
            .into_iter()
            .map(|f| self.classify(f, now).value())
            .collect()
    }

    /// Builds the full key in a reused buffer and asks the store in place:
    /// in-process stores answer, others get a copy of the key to be asked
    /// with (built once either way).
    #[inline]
    fn in_place(&self, key: &K, now: u64) -> InPlace<V> {
        KEY_BUF.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => self.in_place_with(&mut buf, key, now),
            // A lookup from inside a lookup on this thread (a value's `Drop`,
            // a metrics recorder): a buffer of its own, no panic.
            Err(_) => self.in_place_with(&mut KeyBuf::new(), key, now),
        })
    }

    #[inline(always)]
    fn in_place_with(&self, buf: &mut KeyBuf, key: &K, now: u64) -> InPlace<V> {
        let Ok(full) = self.write_key_reusing(buf, key) else {
            return InPlace::Failed;
        };
        match self.shared.store.get_now(full, now) {
            Some(found) => InPlace::Answered(self.classify(found, now)),
            None => InPlace::Ask(full.to_owned()),
        }
    }

    async fn lookup_full(&self, full: &str) -> Result<Lookup<V>, CacheError> {
        let now = unix_ms();
        match self.shared.store.get_now(full, now) {
            Some(found) => Ok(self.classify(found, now)),
            None => self.fetch(full, now).await,
        }
    }

    /// Asks a store that must be awaited (freshness judged as of `now`, the
    /// time the lookup started).
    async fn fetch(&self, full: &str, now: u64) -> Result<Lookup<V>, CacheError> {
        match self.shared.store.get(full).await {
            Ok(found) => Ok(self.classify(found, now)),
            Err(e) => {
                self.store_failed("get", &e);
                Err(e)
            }
        }
    }

    #[inline(always)]
    fn classify(&self, found: Option<Found<V>>, now: u64) -> Lookup<V> {
        let metrics = &self.shared.metrics;
        match found {
            Some(Found { entry, level }) => match entry.freshness(now) {
                Freshness::Fresh => {
                    metrics.hit(level);
                    Lookup::Fresh(entry.value)
                }
                Freshness::Stale => {
                    metrics.stale(level);
                    Lookup::Stale(entry.value)
                }
                Freshness::Expired => {
                    metrics.miss(self.shared.store.deepest_level());
                    Lookup::Miss
                }
            },
            None => {
                metrics.miss(self.shared.store.deepest_level());
                Lookup::Miss
            }
        }
    }

    fn store_failed(&self, op: &'static str, e: &CacheError) {
        self.shared.metrics.error(self.shared.store.deepest_level());
        if let Some(suppressed) = self.shared.store_errors.check() {
            tracing::warn!(
                cache = %self.shared.name,
                op,
                error = %e,
                suppressed,
                "cache store failing; reads are misses and writes are dropped (logged at most once per 10 s)"
            );
        }
    }

    /// An entry for `value`, fresh for the TTL less a random jitter.
    fn entry(&self, value: Option<V>) -> Entry<V> {
        let config = &self.shared.config;
        let now = unix_ms();
        let ttl = match value {
            Some(_) => {
                let cut = (config.ttl_ms as f64 * config.jitter * rand::random::<f64>()) as u64;
                config.ttl_ms - cut.min(config.ttl_ms - 1)
            }
            None => config.negative_ttl_ms.unwrap_or(0),
        };
        let stale = if value.is_some() { config.stale_ms } else { 0 };
        Entry {
            value,
            fresh_until: now.saturating_add(ttl),
            stale_until: now.saturating_add(ttl).saturating_add(stale),
        }
    }

    /// Stores `value` under `key` for the TTL.
    ///
    /// Fails only on what the caller can fix (a key or value over its limit, a
    /// value that does not serialize). A store that is down drops the write:
    /// counted in `ee_cache_dropped_writes_total` and logged, not returned.
    pub async fn set(&self, key: &K, value: V) -> Result<(), CacheError> {
        self.set_tagged(key, value, &[]).await
    }

    /// Stores `value` under `key`, tagged: [`Cache::invalidate_tag`] with any
    /// of `tags` removes it.
    pub async fn set_tagged(&self, key: &K, value: V, tags: &[&str]) -> Result<(), CacheError> {
        let full = self.full_key(key)?;
        self.supersede(&full);
        let tags = self.full_tags(tags);
        self.write_entry(&full, self.entry(Some(value)), &tags)
            .await
    }

    /// Stores `value` under `key`, fresh for `ttl` (no jitter) and then
    /// servable stale for `stale`, tagged with `tags`: for values that carry
    /// their own lifetime (HTTP responses).
    pub async fn set_for(
        &self,
        key: &K,
        value: V,
        ttl: Duration,
        stale: Duration,
        tags: &[&str],
    ) -> Result<(), CacheError> {
        let full = self.full_key(key)?;
        self.supersede(&full);
        let tags = self.full_tags(tags);
        let now = unix_ms();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let fresh_until = now.saturating_add(ms(ttl));
        let entry = Entry {
            value: Some(value),
            fresh_until,
            stale_until: fresh_until.saturating_add(ms(stale)),
        };
        self.write_entry(&full, entry, &tags).await
    }

    /// A load of `full` that started before this write must not store its
    /// (older) result, and later callers must not wait for it.
    fn supersede(&self, full: &str) {
        let flight = self
            .shared
            .inflight
            .lock()
            .expect("inflight map")
            .remove(full);
        if let Some(flight) = flight {
            flight.supersede();
        }
    }

    async fn write_entry(
        &self,
        full: &str,
        entry: Entry<V>,
        tags: &[String],
    ) -> Result<(), CacheError> {
        match self.shared.store.set(full, entry, tags).await {
            Ok(()) => Ok(()),
            Err(e @ CacheError::Unavailable(_)) => {
                self.shared.metrics.dropped_write();
                self.store_failed("set", &e);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Removes `key` (from every level, and from other instances' L1 with a
    /// tiered store). A store that is down: counted and logged, not returned.
    pub async fn delete(&self, key: &K) -> Result<(), CacheError> {
        let full = self.full_key(key)?;
        self.supersede(&full);
        if let Err(e) = self.shared.store.delete(&full).await {
            self.shared.metrics.dropped_write();
            self.store_failed("delete", &e);
        }
        Ok(())
    }

    /// Removes every entry tagged `tag` in this view (every level, every
    /// instance with a tiered store).
    pub async fn invalidate_tag(&self, tag: &str) {
        let full = self.full_tags(&[tag]).pop().expect("one tag");
        if let Err(e) = self.shared.store.invalidate_tag(&full).await {
            self.shared.metrics.dropped_write();
            self.store_failed("invalidate_tag", &e);
        }
    }

    /// The value under `key`, loading it on a miss: **single-flight** (the
    /// concurrent misses of one key in this process run `load` once and all
    /// get its result), stored for the TTL.
    ///
    /// `load` returns `Ok(None)` when the source has nothing: with a negative
    /// TTL that absence is cached too. A loader error is returned to every
    /// caller waiting for that load and never cached. With
    /// stale-while-revalidate, a stale entry is returned at once and one
    /// background load refreshes it (hence `'static` loaders).
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, load: F) -> Result<Option<V>, Arc<E>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let full = match self.full_key(key) {
            Ok(full) => full,
            // A key that can never be cached still gets its value.
            Err(e) => {
                tracing::debug!(cache = %self.shared.name, error = %e, "uncacheable key; loading directly");
                return self.timed_load(load).await;
            }
        };
        let mut load = Some(load);
        loop {
            match self.lookup_full(&full).await {
                Ok(Lookup::Fresh(v)) => return Ok(v),
                Ok(Lookup::Stale(v)) => {
                    if let Some(load) = load.take() {
                        self.refresh_in_background(full, load);
                    }
                    return Ok(v);
                }
                Ok(Lookup::Miss) | Err(_) => {}
            }
            match self.join::<E>(&full) {
                Role::Follower(mut rx) => {
                    if let Ok(outcome) = rx.wait_for(Option::is_some).await {
                        return outcome.clone().expect("waited for Some");
                    }
                    // The loading caller went away (cancelled): try again.
                }
                Role::Leader(flight) => {
                    // Someone may have stored it between our lookup and now.
                    if let Ok(Lookup::Fresh(v)) = self.lookup_full(&full).await {
                        flight.finish(Ok(v.clone()));
                        return Ok(v);
                    }
                    let load = load.take().expect("a caller leads at most once");
                    let outcome = self.timed_load(load).await;
                    if let Ok(value) = &outcome
                        && !flight.superseded()
                    {
                        self.store_loaded(&full, value.clone()).await;
                    }
                    flight.finish(outcome.clone());
                    return outcome;
                }
                Role::Alone => {
                    let load = load.take().expect("a caller loads at most once");
                    let outcome = self.timed_load(load).await;
                    if let Ok(value) = &outcome {
                        self.store_loaded(&full, value.clone()).await;
                    }
                    return outcome;
                }
            }
        }
    }

    async fn timed_load<F, Fut, E>(&self, load: F) -> Result<Option<V>, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        let started = Instant::now();
        let outcome = load().await.map_err(Arc::new);
        self.shared
            .metrics
            .loaded(started.elapsed(), outcome.as_ref().ok());
        outcome
    }

    async fn store_loaded(&self, full: &str, value: Option<V>) {
        if value.is_none() && self.shared.config.negative_ttl_ms.is_none() {
            return;
        }
        if let Err(e) = self.write_entry(full, self.entry(value), &[]).await {
            tracing::debug!(cache = %self.shared.name, error = %e, "loaded value not cached");
        }
    }

    fn refresh_in_background<F, Fut, E>(&self, full: String, load: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Option<V>, E>> + Send + 'static,
        E: Send + Sync + 'static,
    {
        let Role::Leader(flight) = self.join::<E>(&full) else {
            return; // already being refreshed
        };
        // The task outlives this call: take a view without the key type.
        let cache: Cache<str, V, S> = Cache {
            shared: self.shared.clone(),
            scope: self.scope.clone(),
            _key: PhantomData,
        };
        tokio::spawn(async move {
            let outcome = cache.timed_load(load).await;
            if let Ok(value) = &outcome
                && !flight.superseded()
            {
                cache.store_loaded(&full, value.clone()).await;
            }
            flight.finish(outcome);
        });
    }

    fn join<E: Send + Sync + 'static>(&self, full: &str) -> Role<V, E, S> {
        let mut inflight = self.shared.inflight.lock().expect("inflight map");
        if let Some(existing) = inflight.get(full) {
            return match existing.as_any().downcast_ref::<Flight<V, E>>() {
                Some(flight) => Role::Follower(flight.tx.subscribe()),
                // A load of the same key with another error type: not shared.
                None => Role::Alone,
            };
        }
        let tx: Arc<Flight<V, E>> = Arc::new(Flight {
            tx: watch::channel(None).0,
            superseded: AtomicBool::new(false),
        });
        inflight.insert(full.to_owned(), tx.clone());
        Role::Leader(FlightGuard {
            shared: self.shared.clone(),
            key: full.to_owned(),
            tx,
        })
    }
}

enum Role<V, E, S> {
    Leader(FlightGuard<V, E, S>),
    Follower(watch::Receiver<Outcome<V, E>>),
    Alone,
}

/// The leader's hold on a load: publishes the outcome, and leaves the
/// in-flight map when done or dropped (a cancelled leader wakes its followers,
/// who then try again).
struct FlightGuard<V, E, S> {
    shared: Arc<Shared<V, S>>,
    key: String,
    tx: Arc<Flight<V, E>>,
}

impl<V, E, S> FlightGuard<V, E, S> {
    fn finish(self, outcome: Result<Option<V>, Arc<E>>) {
        self.tx.tx.send_replace(Some(outcome));
    }

    fn superseded(&self) -> bool {
        self.tx.superseded.load(Ordering::Acquire)
    }
}

impl<V, E, S> Drop for FlightGuard<V, E, S> {
    fn drop(&mut self) {
        let mut inflight = self.shared.inflight.lock().expect("inflight map");
        if let Some(current) = inflight.get(&self.key) {
            let ours = Arc::as_ptr(&self.tx).cast::<()>();
            if std::ptr::addr_eq(Arc::as_ptr(current), ours) {
                inflight.remove(&self.key);
            }
        }
    }
}
