//! L1 in memory, L2 on Redis, L1 copies invalidated across instances.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ee_core::{RedisConfig, unix_ms};
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::entry::{Entry, Freshness};
use crate::error::CacheError;
use crate::memory::MemoryStore;
use crate::redis::RedisStore;
use crate::store::{CacheStore, Found, Level};

/// The pub/sub channel every tiered store of every cache listens on.
pub const INVALIDATION_CHANNEL: &str = "ee:cache:invalidate";

/// An in-process L1 ([`MemoryStore`]) in front of a shared L2 ([`RedisStore`]).
///
/// Reads try L1, then L2 (filling L1). Writes go to L2, then to this
/// instance's L1, then a message on [`INVALIDATION_CHANNEL`] makes every other
/// instance drop its L1 copy of the key (or of every key of a tag).
///
/// **Staleness bound.** While an instance is subscribed, another instance's
/// write reaches it within the pub/sub delivery time (milliseconds; the tests
/// check 200 ms). An L1 fill that races an invalidation, this instance's or
/// another's, is not kept (a generation counter per key shard detects it). While the subscription is down (Redis
/// unreachable), L1 keeps serving what it has, so the bound becomes the L1's
/// `max_ttl`: build the L1 with one (10 s in the examples). On re-subscribing,
/// L1 is cleared, since messages may have been missed.
pub struct TieredStore<V> {
    inner: Arc<Inner<V>>,
}

impl<V> Clone for TieredStore<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<V> std::fmt::Debug for TieredStore<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredStore")
            .field("l1", &self.inner.l1)
            .field("l2", &self.inner.l2)
            .field(
                "subscribed",
                &self.inner.state.subscribed.load(Ordering::Relaxed),
            )
            .finish()
    }
}

struct Inner<V> {
    l1: MemoryStore<V>,
    l2: RedisStore,
    /// Who we are, to ignore our own messages.
    instance: String,
    state: Arc<ListenerState>,
    listener: tokio::task::AbortHandle,
}

struct ListenerState {
    subscribed: AtomicBool,
    /// Invalidation generations, sharded by key hash: an invalidation received
    /// bumps its key's shard (a tag's, or a resubscription, bumps all), and an
    /// L1 fill that saw its shard change while reading L2 is dropped.
    generations: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
}

const GENERATION_SHARDS: usize = 256;

impl ListenerState {
    fn new() -> Self {
        Self {
            subscribed: AtomicBool::new(false),
            generations: (0..GENERATION_SHARDS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> &AtomicU64 {
        use std::hash::BuildHasher;
        &self.generations[self.hasher.hash_one(key) as usize % GENERATION_SHARDS]
    }

    fn generation(&self, key: &str) -> u64 {
        self.shard(key).load(Ordering::Acquire)
    }

    fn bump(&self, key: &str) {
        self.shard(key).fetch_add(1, Ordering::AcqRel);
    }

    fn bump_all(&self) {
        for g in self.generations.iter() {
            g.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl<V> Drop for Inner<V> {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl<V> TieredStore<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Puts `l1` in front of `l2` and subscribes to invalidations through
    /// `pubsub` (for a Cluster, its first node: Cluster pub/sub reaches every
    /// node). Waits up to the connect timeout for the first subscription; if it
    /// is not there yet, keeps trying in the background.
    pub async fn connect(
        l1: MemoryStore<V>,
        l2: RedisStore,
        pubsub: &RedisConfig,
    ) -> Result<Self, CacheError> {
        let url = pubsub
            .cluster_nodes
            .first()
            .cloned()
            .unwrap_or_else(|| pubsub.url.clone());
        let client =
            redis::Client::open(url.as_str()).map_err(|e| CacheError::Config(e.to_string()))?;
        let state = Arc::new(ListenerState::new());
        let instance = format!("{:016x}", rand::random::<u64>());
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(
            client,
            instance.clone(),
            l1.clone(),
            state.clone(),
            ready_tx,
        ))
        .abort_handle();
        let _ = tokio::time::timeout(pubsub.connect_timeout(), ready_rx).await;
        Ok(Self {
            inner: Arc::new(Inner {
                l1,
                l2,
                instance,
                state,
                listener,
            }),
        })
    }

    /// Whether invalidations from other instances are being received.
    pub fn is_subscribed(&self) -> bool {
        self.inner.state.subscribed.load(Ordering::Acquire)
    }

    /// The L1.
    pub fn l1(&self) -> &MemoryStore<V> {
        &self.inner.l1
    }

    /// The L2.
    pub fn l2(&self) -> &RedisStore {
        &self.inner.l2
    }

    fn l1_found(&self, key: &str, now: u64) -> Option<Found<V>> {
        self.inner.l1.lookup_at(key, now).map(|entry| Found {
            entry,
            level: Level::L1,
        })
    }

    /// Puts what L2 answered into L1, unless an invalidation of the key
    /// (ours or another instance's) came after `generation` was read; one
    /// landing during the insert takes the entry out again.
    fn fill(&self, key: &str, entry: &Entry<V>, tags: &[String], generation: u64) {
        let state = &self.inner.state;
        if state.generation(key) != generation {
            return;
        }
        self.inner.l1.insert(key, entry.clone(), tags);
        if state.generation(key) != generation {
            self.inner.l1.remove(key);
        }
    }

    fn message(&self, kind: char, name: &str) -> String {
        format!("{}\n{kind}\n{name}", self.inner.instance)
    }

    async fn publish(&self, kind: char, name: &str) {
        let message = self.message(kind, name);
        let published = self
            .inner
            .l2
            .conn()
            .query::<i64>(redis::cmd("PUBLISH").arg(INVALIDATION_CHANNEL).arg(message))
            .await;
        if let Err(e) = published {
            tracing::debug!(error = %e, "cache invalidation not published");
        }
    }
}

async fn listen<V: Clone + Send + Sync + 'static>(
    client: redis::Client,
    instance: String,
    l1: MemoryStore<V>,
    state: Arc<ListenerState>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    loop {
        if let Ok(mut pubsub) = client.get_async_pubsub().await
            && pubsub.subscribe(INVALIDATION_CHANNEL).await.is_ok()
        {
            // Whatever was published while we were not listening is lost.
            l1.clear();
            state.bump_all();
            state.subscribed.store(true, Ordering::Release);
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Ok(payload) = message.get_payload::<String>() else {
                    continue;
                };
                let mut parts = payload.splitn(3, '\n');
                let (Some(from), Some(kind), Some(name)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                if from == instance {
                    continue;
                }
                match kind {
                    "k" => {
                        state.bump(name);
                        l1.remove(name);
                    }
                    "t" => {
                        state.bump_all();
                        l1.remove_tag(name);
                    }
                    _ => {}
                }
            }
            state.subscribed.store(false, Ordering::Release);
            tracing::warn!(
                "cache invalidation subscription lost; L1 entries may be stale up to their max TTL until it is back"
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

impl<V> CacheStore<V> for TieredStore<V>
where
    V: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    async fn get(&self, key: &str) -> Result<Option<Found<V>>, CacheError> {
        if let Some(found) = self.l1_found(key, unix_ms()) {
            return Ok(Some(found));
        }
        let generation = self.inner.state.generation(key);
        let Some((entry, tags)) = self.inner.l2.fetch::<V>(key).await? else {
            return Ok(None);
        };
        if entry.freshness(unix_ms()) != Freshness::Expired {
            self.fill(key, &entry, &tags, generation);
        }
        Ok(Some(Found {
            entry,
            level: Level::L2,
        }))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Found<V>>>, CacheError> {
        let now = unix_ms();
        let mut out: Vec<Option<Found<V>>> = keys.iter().map(|k| self.l1_found(k, now)).collect();
        let missing: Vec<String> = keys
            .iter()
            .zip(&out)
            .filter(|(_, found)| found.is_none())
            .map(|(k, _)| k.clone())
            .collect();
        if missing.is_empty() {
            return Ok(out);
        }
        let generations: Vec<u64> = missing
            .iter()
            .map(|k| self.inner.state.generation(k))
            .collect();
        let fetched = self.inner.l2.fetch_many::<V>(&missing).await?;
        let mut fetched = missing.iter().zip(generations).zip(fetched);
        for slot in out.iter_mut().filter(|f| f.is_none()) {
            let Some(((key, generation), Some((entry, tags)))) = fetched.next() else {
                continue;
            };
            if entry.freshness(unix_ms()) != Freshness::Expired {
                self.fill(key, &entry, &tags, generation);
            }
            *slot = Some(Found {
                entry,
                level: Level::L2,
            });
        }
        Ok(out)
    }

    async fn set(&self, key: &str, entry: Entry<V>, tags: &[String]) -> Result<(), CacheError> {
        match self.inner.l2.set(key, entry.clone(), tags).await {
            Ok(()) => {
                // A fill of the old value racing this write is dropped.
                self.inner.state.bump(key);
                self.inner.l1.insert(key, entry, tags);
                self.publish('k', key).await;
                Ok(())
            }
            Err(e) => {
                // Not shared: do not serve it here either.
                self.inner.l1.remove(key);
                Err(e)
            }
        }
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.inner.l1.remove(key);
        let conn = self.inner.l2.conn();
        if conn.is_cluster() {
            // The key and the channel may live on different nodes.
            let deleted = <RedisStore as CacheStore<V>>::delete(&self.inner.l2, key).await;
            self.inner.state.bump(key);
            self.inner.l1.remove(key);
            self.publish('k', key).await;
            return deleted;
        }
        // One round trip: Redis runs a pipeline's commands in order, so the
        // key is gone from L2 before any other instance hears to drop it.
        let mut pipe = redis::pipe();
        pipe.cmd("UNLINK")
            .arg(key)
            .ignore()
            .cmd("PUBLISH")
            .arg(INVALIDATION_CHANNEL)
            .arg(self.message('k', key))
            .ignore();
        let deleted = conn
            .query_pipeline::<()>(&pipe)
            .await
            .map_err(|e| CacheError::Unavailable(e.to_string()));
        self.inner.state.bump(key);
        self.inner.l1.remove(key);
        deleted
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<(), CacheError> {
        self.inner.l1.remove_tag(tag);
        let taken = self.inner.l2.take_tag(tag).await;
        self.inner.state.bump_all();
        self.inner.l1.remove_tag(tag);
        self.publish('t', tag).await;
        taken.map(drop)
    }

    fn deepest_level(&self) -> Level {
        Level::L2
    }

    #[inline]
    fn get_now(&self, key: &str, now: u64) -> Option<Option<Found<V>>> {
        // An L1 hit answers now; a miss must ask L2.
        self.l1_found(key, now).map(Some)
    }
}
