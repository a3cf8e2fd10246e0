//! A key a request holds while its handler runs: the holder's token, the
//! lease renewal, and the release.

use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::store::IdempotencyStore;

/// A holder token unique to this process run and request: a random seed per
/// process, so two instances (even two containers that are both pid 1,
/// started in the same instant) do not hand out the same tokens.
pub(crate) fn token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        // std's hasher keys come from the OS's random source.
        std::collections::hash_map::RandomState::new().hash_one(std::process::id())
    });
    // Odd multiplier: distinct counters give distinct tokens.
    seed ^ NEXT
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The key this request holds, in the store that gave it (the layer's, or
/// the fallback memory store while that one fails). It is freed explicitly
/// where a retry may safely run again (the handler failed, answered 5xx, or
/// its response cannot be stored). A request cut off after taking its key
/// (client gone, timeout) does *not* free it: the handler may have done its
/// work, so the key stays taken until the lease ends and retries get 409
/// meanwhile.
pub(crate) struct HeldKey<T: IdempotencyStore> {
    pub(crate) store: T,
    pub(crate) key: String,
    pub(crate) token: u64,
}

impl<T: IdempotencyStore> HeldKey<T> {
    /// Renews the lease every third of it while the handler runs, so a slow
    /// handler keeps its key; stops when dropped (the handler finished, or the
    /// request was cut off: then the lease runs out as documented).
    pub(crate) fn keep_alive(&self, lease: Duration) -> Option<Heartbeat> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (store, key, token) = (self.store.clone(), self.key.clone(), self.token);
        let every = (lease / 3).max(Duration::from_millis(10));
        let task = runtime.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match store.extend(&key, token, lease).await {
                    Ok(true) => {}
                    Ok(false) => break, // lost the key: nothing left to renew
                    Err(e) => {
                        tracing::debug!(error = %e, "idempotency lease not renewed; retrying")
                    }
                }
            }
        });
        Some(Heartbeat(task))
    }

    /// Frees the key (a retry will run again).
    pub(crate) async fn release(self) {
        if let Err(e) = self.store.release(&self.key, self.token).await {
            tracing::warn!(error = %e, "idempotency key not released; its lease will free it");
        }
    }
}

/// Stops the lease renewal when dropped.
pub(crate) struct Heartbeat(tokio::task::JoinHandle<()>);

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct() {
        let tokens: std::collections::HashSet<u64> = (0..10_000).map(|_| token()).collect();
        assert_eq!(tokens.len(), 10_000);
    }
}
