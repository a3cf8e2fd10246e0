//! The in-process store on moka: the embedded default, and the L1 of a
//! tiered cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ee_core::unix_ms;
use moka::notification::RemovalCause;

use crate::config::MemoryStoreConfig;
use crate::entry::Entry;
use crate::error::CacheError;
use crate::store::{CacheStore, Found, Level};

/// What the moka map holds per key.
#[derive(Clone)]
struct Slot<V> {
    entry: Entry<V>,
    /// Its tags, when it has any (no allocation otherwise; one pointer, so a
    /// read copies little).
    tags: Option<Arc<Tagging>>,
}

/// The full tag names of an entry, and which insert wrote it: the tag index
/// records the same number, so the removal of an older value never unlists a
/// newer one.
struct Tagging {
    tags: Box<[String]>,
    seq: u64,
}

/// tag → key → the insert that listed it.
type TagIndex = Arc<Mutex<FoldMap<String, FoldMap<String, u64>>>>;

/// A map on foldhash, randomly seeded per map: the hasher of the moka map
/// that holds the same keys (SipHash cost more than the rest of an index
/// update).
type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

static INSERTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Entries kept in this process, on [`moka`]: bounded by entry count
/// (10 000 unless set), by bytes as well for HTTP responses (64 MiB unless
/// set: `MemoryStoreBuilder::max_bytes`, feature `http`), or by a weight of
/// yours instead ([`MemoryStoreBuilder::max_weight`]); and by a store-wide
/// TTL (1 hour unless set), and by an idle time if set.
///
/// When full, it evicts (moka's TinyLFU: a new entry takes the place of the
/// least recently used ones only if it is asked for more often than they
/// are, else it is dropped), so a flood of keys read once cannot push out
/// the entries in use. moka applies the bound in its upkeep, which runs
/// every few dozen writes: between two runs the store may hold a few dozen
/// entries over it.
///
/// An entry read after the end of its own stale window reads as absent and
/// is dropped; until then an expired entry only takes room, which the size
/// bound reclaims first. Tags are indexed so `invalidate_tag` removes
/// the tagged keys (each listing stamped by the write that made it, so the
/// removal of an old value never unlists a newer one); a write racing the
/// invalidation of its own tag is dropped too: a miss, never a stale hit.
///
/// ```
/// use ee_cache::MemoryStore;
/// let store: MemoryStore<String> = MemoryStore::builder().max_entries(10_000).build();
/// ```
pub struct MemoryStore<V> {
    map: moka::sync::Cache<String, Slot<V>, foldhash::fast::RandomState>,
    tags: TagIndex,
    max_ttl: Duration,
}

/// How long a memory store keeps an entry at most, by default.
pub const DEFAULT_MEMORY_MAX_TTL: Duration = Duration::from_secs(3600);

impl<V> Clone for MemoryStore<V> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            tags: self.tags.clone(),
            max_ttl: self.max_ttl,
        }
    }
}

impl<V> std::fmt::Debug for MemoryStore<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.map.entry_count())
            .finish_non_exhaustive()
    }
}

type Weigher<V> = Arc<dyn Fn(&str, &V) -> u32 + Send + Sync>;
type EvictionHook = Arc<dyn Fn(RemovalCause) + Send + Sync>;
/// A value's size in bytes, for the types whose size the crate knows.
type ByteSize<V> = fn(&V) -> usize;

/// What an entry takes besides its key, value and tags: moka's entry, its
/// place in the hash table and the policy queues, the slot, and the
/// allocator's share. Measured: a process holding 20 000 stored responses
/// (glibc malloc) grows by what [`entry_bytes`] says, within 5 %.
const ENTRY_OVERHEAD: usize = 512;
/// What each of an entry's tags takes besides the tag and a copy of the key
/// (its listing in the tag index).
const TAG_OVERHEAD: usize = 48;

/// Builds a [`MemoryStore`].
pub struct MemoryStoreBuilder<V> {
    max_entries: u64,
    /// The byte bound, for values whose size is known (`byte_size`).
    max_bytes: Option<u64>,
    byte_size: Option<ByteSize<V>>,
    weigher: Option<(u64, Weigher<V>)>,
    time_to_idle: Option<Duration>,
    max_ttl: Duration,
    on_evict: Option<EvictionHook>,
}

impl<V> std::fmt::Debug for MemoryStoreBuilder<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStoreBuilder")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .field("weighed", &self.weigher.is_some())
            .field("time_to_idle", &self.time_to_idle)
            .field("max_ttl", &self.max_ttl)
            .finish_non_exhaustive()
    }
}

/// How to size a value in bytes, for the value types whose size the crate
/// knows: HTTP responses ([`Variants`](crate::Variants)), so that their
/// store is bounded by bytes by default, however it was built. Other types
/// are bounded by entries, or by a weigher of yours.
fn byte_size<V: 'static>() -> Option<ByteSize<V>> {
    #[cfg(feature = "http")]
    if std::any::TypeId::of::<V>() == std::any::TypeId::of::<crate::Variants>() {
        return Some(|v: &V| {
            (v as &dyn std::any::Any)
                .downcast_ref::<crate::Variants>()
                .map_or(0, crate::Variants::size_bytes)
        });
    }
    None
}

/// The byte bound a store starts with: [`DEFAULT_RESPONSE_CACHE_BYTES`]
/// for values whose size is known (HTTP responses), none for others.
///
/// [`DEFAULT_RESPONSE_CACHE_BYTES`]: crate::DEFAULT_RESPONSE_CACHE_BYTES
fn default_max_bytes<V>(byte_size: Option<ByteSize<V>>) -> Option<u64> {
    #[cfg(feature = "http")]
    let bound = crate::http::DEFAULT_RESPONSE_CACHE_BYTES;
    // Without `http` no value's size is known: `byte_size` is `None`.
    #[cfg(not(feature = "http"))]
    let bound = 0;
    byte_size.map(|_| bound)
}

/// The bytes an entry takes: key, value, tags (with their listing in the
/// index) and the structures around them.
fn entry_bytes<V>(key: &str, slot: &Slot<V>, size: ByteSize<V>) -> usize {
    let tags = slot.tags.as_ref().map_or(0, |t| {
        t.tags
            .iter()
            .map(|tag| TAG_OVERHEAD + 2 * tag.len() + key.len())
            .sum()
    });
    ENTRY_OVERHEAD + key.len() + tags + slot.entry.value.as_ref().map_or(0, size)
}

impl<V: Clone + Send + Sync + 'static> MemoryStore<V> {
    /// A store of at most 10 000 entries and, for HTTP responses, 64 MiB.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Starts a store with options.
    pub fn builder() -> MemoryStoreBuilder<V> {
        let byte_size = byte_size::<V>();
        MemoryStoreBuilder {
            max_entries: 10_000,
            max_bytes: default_max_bytes(byte_size),
            byte_size,
            weigher: None,
            time_to_idle: None,
            max_ttl: DEFAULT_MEMORY_MAX_TTL,
            on_evict: None,
        }
    }

    /// Entries currently held (after pending maintenance).
    pub fn len(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.entry_count()
    }

    /// What the store holds in the units of its bound (after pending
    /// maintenance): for a store bounded by bytes (HTTP responses), the
    /// bytes of its entries, each counted as at least `max_bytes /
    /// max_entries` (which is how the entry bound holds too); with
    /// [`max_weight`](MemoryStoreBuilder::max_weight), the total weight;
    /// otherwise the number of entries.
    pub fn weighted_size(&self) -> u64 {
        self.map.run_pending_tasks();
        self.map.weighted_size()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (a tiered store does this when it may have missed
    /// invalidations).
    pub fn clear(&self) {
        self.map.invalidate_all();
        self.tags.lock().expect("tag index").clear();
    }

    /// Removes `key` (no error: memory cannot fail).
    pub fn remove(&self, key: &str) {
        self.map.invalidate(key);
    }

    /// Removes every key recorded under `tag`.
    pub fn remove_tag(&self, tag: &str) {
        let keys = self.tags.lock().expect("tag index").remove(tag);
        for key in keys.into_iter().flatten().map(|(key, _)| key) {
            self.map.invalidate(&key);
        }
    }

    /// Stores an entry (capped to the store's longest TTL, if it has one).
    pub fn insert(&self, key: &str, mut entry: Entry<V>, tags: &[String]) {
        let cap =
            unix_ms().saturating_add(u64::try_from(self.max_ttl.as_millis()).unwrap_or(u64::MAX));
        entry.fresh_until = entry.fresh_until.min(cap);
        entry.stale_until = entry.stale_until.min(cap);
        if tags.is_empty() {
            let slot = Slot { entry, tags: None };
            self.map.insert(key.to_owned(), slot);
            return;
        }
        let seq = INSERTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut index = self.tags.lock().expect("tag index");
            for tag in tags {
                match index.get_mut(tag) {
                    Some(keys) => match keys.get_mut(key) {
                        Some(listed) => *listed = seq,
                        None => {
                            keys.insert(key.to_owned(), seq);
                        }
                    },
                    None => {
                        let mut keys = FoldMap::default();
                        keys.insert(key.to_owned(), seq);
                        index.insert(tag.clone(), keys);
                    }
                }
            }
        }
        let slot = Slot {
            entry,
            tags: Some(Arc::new(Tagging {
                tags: tags.into(),
                seq,
            })),
        };
        self.map.insert(key.to_owned(), slot);
        // A tag purge that ran between listing and inserting took the key
        // from the index before the value landed: drop the value too.
        let index = self.tags.lock().expect("tag index");
        let purged = tags
            .iter()
            .any(|tag| index.get(tag).and_then(|keys| keys.get(key)) != Some(&seq));
        drop(index);
        if purged {
            self.map.invalidate(key);
        }
    }

    /// The entry under `key`, if it has not expired (an expired one is
    /// dropped).
    pub fn lookup(&self, key: &str) -> Option<Entry<V>> {
        self.lookup_at(key, unix_ms())
    }

    /// [`MemoryStore::lookup`] at `now` (Unix ms).
    #[inline(always)]
    pub fn lookup_at(&self, key: &str, now: u64) -> Option<Entry<V>> {
        let entry = self.map.get(key)?.entry;
        if entry.stale_until <= now {
            self.map.invalidate(key);
            return None;
        }
        Some(entry)
    }
}

impl<V: Clone + Send + Sync + 'static> Default for MemoryStore<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Clone + Send + Sync + 'static> MemoryStoreBuilder<V> {
    /// All the bounds at once, from configuration (checked first); a field
    /// left out is its default, whatever was set before.
    ///
    /// ```
    /// use ee_cache::{MemoryStore, MemoryStoreConfig, Variants};
    /// let config: MemoryStoreConfig =
    ///     serde_json::from_str(r#"{ "max_entries": 50000, "max_bytes": 268435456 }"#).unwrap();
    /// let responses: MemoryStore<Variants> = MemoryStore::builder().config(&config)?.build();
    /// # Ok::<(), ee_cache::CacheError>(())
    /// ```
    ///
    /// # Errors
    /// [`CacheError::Config`] when a value is out of range (see
    /// [`MemoryStoreConfig::validate`]), or when `max_bytes` is set for
    /// values whose size the store does not know (anything but HTTP
    /// responses: bound those with [`max_weight`](Self::max_weight)).
    pub fn config(mut self, config: &MemoryStoreConfig) -> Result<Self, CacheError> {
        config.validate()?;
        if config.max_bytes.is_some() && self.byte_size.is_none() {
            return Err(CacheError::Config(format!(
                "max_bytes bounds stores of HTTP responses; the size of a {} is not known: \
                 bound its store with MemoryStoreBuilder::max_weight",
                std::any::type_name::<V>()
            )));
        }
        self.max_bytes = config.max_bytes.or(default_max_bytes(self.byte_size));
        self.max_entries = config.max_entries;
        self.max_ttl = Duration::from_millis(config.max_ttl_ms);
        self.time_to_idle = config.time_to_idle_ms.map(Duration::from_millis);
        Ok(self)
    }

    /// At most `n` entries (default 10 000); least useful ones are evicted
    /// first. A store of HTTP responses is bounded by bytes as well
    /// (`max_bytes`, feature `http`).
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = n;
        self
    }

    /// Bounds the store by total weight instead of entry count (and instead
    /// of the byte bound of HTTP responses): `weigher` gives each entry's
    /// weight, up to `u32::MAX`. Weigh a value by its approximate size in
    /// bytes to bound a [`Cache`](crate::Cache) of your values by memory:
    ///
    /// ```
    /// use ee_cache::MemoryStore;
    /// // At most 32 MiB of names, counting each key and its text.
    /// let names: MemoryStore<String> = MemoryStore::builder()
    ///     .max_weight(32 << 20, |key: &str, name: &String| (key.len() + name.len() + 100) as u32)
    ///     .build();
    /// ```
    pub fn max_weight(
        mut self,
        max: u64,
        weigher: impl Fn(&str, &V) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.weigher = Some((max, Arc::new(weigher)));
        self
    }

    /// Drops an entry not read for `idle`, even within its TTL.
    pub fn time_to_idle(mut self, idle: Duration) -> Self {
        self.time_to_idle = Some(idle);
        self
    }

    /// Keeps no entry longer than `ttl` (default 1 hour), whatever the cache
    /// asks (the L1 of a tiered store uses this as its staleness bound).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = ttl;
        self
    }

    /// Counts evictions in `ee_cache_evictions_total{cache=name,cause}`.
    pub fn name(self, name: &str) -> Self {
        crate::metrics::describe_metrics();
        self.on_evict(crate::metrics::eviction_counter(name))
    }

    /// Called on every eviction (size, expiry).
    pub fn on_evict(mut self, hook: impl Fn(RemovalCause) + Send + Sync + 'static) -> Self {
        self.on_evict = Some(Arc::new(hook));
        self
    }

    /// The store.
    pub fn build(self) -> MemoryStore<V> {
        let tags: TagIndex = Arc::default();
        let index = tags.clone();
        let on_evict = self.on_evict;
        let mut builder = moka::sync::Cache::builder()
            // One TTL for all (cheap on reads, unlike per-entry expiry);
            // entries past their own end read as absent and are dropped then.
            .time_to_live(self.max_ttl)
            .eviction_listener(move |key: Arc<String>, slot: Slot<V>, cause| {
                // Unlist the removed value, unless a newer insert listed the
                // key again (whatever moka calls the removal).
                if let Some(tagging) = &slot.tags {
                    let mut index = index.lock().expect("tag index");
                    for tag in tagging.tags.iter() {
                        if let Some(keys) = index.get_mut(tag) {
                            if keys.get(key.as_str()) == Some(&tagging.seq) {
                                keys.remove(key.as_str());
                            }
                            if keys.is_empty() {
                                index.remove(tag);
                            }
                        }
                    }
                }
                if cause.was_evicted()
                    && let Some(hook) = &on_evict
                {
                    hook(cause);
                }
            });
        builder = match (self.weigher, self.byte_size.zip(self.max_bytes)) {
            (Some((max, weigher)), _) => {
                builder
                    .max_capacity(max)
                    .weigher(
                        move |key: &String, slot: &Slot<V>| match &slot.entry.value {
                            Some(v) => weigher(key, v),
                            None => key.len() as u32,
                        },
                    )
            }
            (None, Some((size, max_bytes))) if self.max_entries > 0 => {
                // Each entry weighs at least its share of the bytes under
                // the entry bound, so both bounds hold with one capacity.
                let floor = max_bytes.div_ceil(self.max_entries);
                builder
                    .max_capacity(max_bytes)
                    .weigher(move |key: &String, slot: &Slot<V>| {
                        let bytes = entry_bytes(key, slot, size) as u64;
                        u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
                    })
            }
            _ => builder.max_capacity(self.max_entries),
        };
        if let Some(idle) = self.time_to_idle {
            builder = builder.time_to_idle(idle);
        }
        MemoryStore {
            // foldhash (seeded per map) hashes a 30-byte key in a tenth of
            // SipHash's instructions.
            map: builder.build_with_hasher(foldhash::fast::RandomState::default()),
            tags,
            max_ttl: self.max_ttl,
        }
    }
}

#[cfg(feature = "http")]
impl MemoryStoreBuilder<crate::Variants> {
    /// At most `bytes` of HTTP responses (default
    /// [`DEFAULT_RESPONSE_CACHE_BYTES`](crate::DEFAULT_RESPONSE_CACHE_BYTES),
    /// 64 MiB), each entry weighed by its responses'
    /// [`size_bytes`](crate::Variants::size_bytes), its key and its tags.
    /// The entry bound ([`max_entries`](Self::max_entries)) holds too: each
    /// entry counts as at least `bytes / max_entries`.
    ///
    /// ```
    /// use ee_cache::{Cache, MemoryStore, ResponseCacheLayer, Variants};
    /// let store: MemoryStore<Variants> = MemoryStore::builder().max_bytes(256 << 20).build();
    /// let layer = ResponseCacheLayer::new(Cache::builder("http").build(store)?);
    /// # Ok::<(), ee_cache::CacheError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http")))]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }
}

impl<V: Clone + Send + Sync + 'static> CacheStore<V> for MemoryStore<V> {
    async fn get(&self, key: &str) -> Result<Option<Found<V>>, CacheError> {
        Ok(self.get_now(key, unix_ms()).flatten())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Found<V>>>, CacheError> {
        let now = unix_ms();
        Ok(keys
            .iter()
            .map(|k| self.get_now(k, now).flatten())
            .collect())
    }

    async fn set(&self, key: &str, entry: Entry<V>, tags: &[String]) -> Result<(), CacheError> {
        self.insert(key, entry, tags);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.remove(key);
        Ok(())
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<(), CacheError> {
        self.remove_tag(tag);
        Ok(())
    }

    #[inline(always)]
    fn get_now(&self, key: &str, now: u64) -> Option<Option<Found<V>>> {
        Some(self.lookup_at(key, now).map(|entry| Found {
            entry,
            level: Level::L1,
        }))
    }
}
