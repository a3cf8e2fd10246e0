//! `KeyMap`: one policy's state per key, bounded in keys.

use std::sync::atomic::{AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::mapref::one::{Ref, RefMut};
use ee_core::Key;
use foldhash::fast::RandomState;

/// Keyed maps hash with foldhash, seeded at random per map (hashbrown's
/// default): a few instructions per IP key where SipHash takes ~70, and an
/// attacker who picks keys cannot predict collisions without the seed.
type DashMap<K, V> = dashmap::DashMap<K, V, RandomState>;

/// A new key was refused: its map already holds its most keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Full;

/// One policy's state per key, holding at most `max` keys: a key already
/// there is always found and updated; a new one is refused ([`Full`]) when
/// the map is full, and nothing already there is evicted to make room.
pub(super) struct KeyMap<V> {
    map: DashMap<Key, V>,
    /// The keys in `map`, counted beside it: checking the bound is one atomic
    /// add where `DashMap::len` read-locks every shard. Written only when a
    /// key comes or goes, never on the path of a key already there.
    len: AtomicUsize,
    max: usize,
}

impl<V> KeyMap<V> {
    /// An empty map that holds at most `max` keys.
    pub(super) fn new(max: usize) -> Self {
        Self {
            map: DashMap::default(),
            len: AtomicUsize::new(0),
            max,
        }
    }

    /// The key's state, if it has any.
    #[inline(always)]
    pub(super) fn get(&self, key: &Key) -> Option<Ref<'_, Key, V>> {
        self.map.get(key)
    }

    /// The key's state, to change, if it has any.
    pub(super) fn get_mut(&self, key: &Key) -> Option<RefMut<'_, Key, V>> {
        self.map.get_mut(key)
    }

    /// The key's state, `new()` when it has none and the map has room;
    /// [`Full`] when it has none and the map is full.
    #[inline(always)]
    pub(super) fn entry(
        &self,
        key: &Key,
        new: impl FnOnce() -> V,
    ) -> Result<RefMut<'_, Key, V>, Full> {
        match self.map.entry(key.clone()) {
            Entry::Occupied(entry) => Ok(entry.into_ref()),
            Entry::Vacant(entry) => {
                self.reserve()?;
                Ok(entry.insert(new()))
            }
        }
    }

    /// Counts one more key, unless that would pass the bound. Counted before
    /// it is checked, so racing inserts never take the map past `max`.
    #[inline(always)]
    fn reserve(&self) -> Result<(), Full> {
        if self.len.fetch_add(1, Ordering::Relaxed) < self.max {
            Ok(())
        } else {
            self.len.fetch_sub(1, Ordering::Relaxed);
            Err(Full)
        }
    }

    /// Removes the key if `f` says so; whether it did.
    pub(super) fn remove_if(&self, key: &Key, f: impl FnOnce(&Key, &V) -> bool) -> bool {
        let removed = self.map.remove_if(key, f).is_some();
        if removed {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    /// Keeps only the keys for which `keep` is true.
    pub(super) fn retain(&self, mut keep: impl FnMut(&Key, &mut V) -> bool) {
        let mut removed = 0;
        self.map.retain(|key, value| {
            let kept = keep(key, value);
            removed += usize::from(!kept);
            kept
        });
        self.len.fetch_sub(removed, Ordering::Relaxed);
    }

    /// Gives back the memory of removed keys.
    pub(super) fn shrink_to_fit(&self) {
        self.map.shrink_to_fit();
    }

    /// The keys held (with, for an instant, one being inserted or refused).
    pub(super) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no key is held.
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
