//! The Redis worker's keeper: renews this worker's leases at half the
//! lease, and every stalled interval looks for stalled jobs (any worker's)
//! and publishes the queue's depth.

use std::sync::Arc;
use std::time::Duration;

use super::fetch::Shared;
use crate::{QueueError, scripts};

/// Keeps the leases and checks for stalled jobs until aborted.
pub(super) async fn keeper(shared: Arc<Shared>) {
    let lease = shared.config.lease();
    let mut renew = tokio::time::interval(lease / 2);
    let mut check = tokio::time::interval(Duration::from_millis(
        shared.config.stalled_interval_ms.max(100),
    ));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0;
    loop {
        let result = tokio::select! {
            _ = renew.tick() => shared.renew().await,
            _ = check.tick() => shared.check_stalled().await,
        };
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                shared.backend_error("lease upkeep", &e, failures);
            }
        }
    }
}

impl Shared {
    /// Extends the lease of every job this worker holds (one RENEW call).
    async fn renew(&self) -> Result<(), QueueError> {
        let held: Vec<(String, Arc<str>)> = self
            .inflight
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|(id, t)| (id.clone(), t.clone()))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let q = &self.queue.inner;
        let mut call = scripts::RENEW.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(self.config.lease_ms.max(100));
        for (id, token) in &held {
            call.arg(id).arg(&**token);
        }
        let lost: Vec<String> = q.conn.invoke(&call).await?;
        if !lost.is_empty() {
            tracing::warn!(queue = %self.queue.name(), jobs = ?lost, "leases lost while the jobs run (they stalled and another worker may run them)");
        }
        Ok(())
    }

    /// Moves jobs whose lease ran out back to waiting (or to failed, past
    /// `max_stalled`), then counts the queue.
    async fn check_stalled(&self) -> Result<(), QueueError> {
        let q = &self.queue.inner;
        let mut call = scripts::STALLED.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(q.config.events_max_len)
            .arg(self.config.max_stalled);
        let (back, failed): (Vec<String>, Vec<String>) = q.conn.invoke(&call).await?;
        if !back.is_empty() || !failed.is_empty() {
            self.meters()
                .stalled
                .increment((back.len() + failed.len()) as u64);
            self.meters().failed.increment(failed.len() as u64);
            tracing::warn!(queue = %self.queue.name(), requeued = ?back, failed = ?failed, "stalled jobs found");
        }
        self.queue.counts().await?;
        Ok(())
    }
}
