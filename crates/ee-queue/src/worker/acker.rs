//! The Redis worker's acker: records outcomes in batches, one FINISH call
//! each; whatever arrived while the previous batch was in flight goes in
//! the next.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc};

use super::RETRY_BACKOFF;
use super::execute::Outcome;
use super::fetch::Shared;
use crate::{QueueError, scripts};

/// How many FINISH calls in a row may fail before a batch is given up (its
/// jobs stay active, and the stalled-job checker runs them again).
const FINISH_TRIES: u32 = 10;

/// One outcome to record, under the token the job was taken with.
pub(super) struct Ack {
    id: String,
    token: Arc<str>,
    outcome: Outcome,
}

/// Hands an outcome to the acker.
pub(super) fn send(
    acks: &mpsc::UnboundedSender<Ack>,
    id: String,
    token: Arc<str>,
    outcome: Outcome,
) {
    // The acker lives until every sender is gone.
    let _ = acks.send(Ack { id, token, outcome });
}

/// Records outcomes in batches until every sender is gone, or, once
/// `flush_now` is notified, until none is waiting.
pub(super) async fn acker(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Ack>,
    flush_now: Arc<Notify>,
) {
    let cap = shared.config.finish_batch.max(1);
    let mut closing = false;
    loop {
        let first = if closing {
            match rx.try_recv() {
                Ok(a) => a,
                Err(_) => return,
            }
        } else {
            tokio::select! {
                a = rx.recv() => match a {
                    Some(a) => a,
                    None => return,
                },
                () = flush_now.notified() => {
                    closing = true;
                    continue;
                }
            }
        };
        let mut batch = vec![first];
        while batch.len() < cap {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        record(&shared, &batch).await;
    }
}

/// Records one batch (retrying a failed call with backoff), forgets its
/// jobs, and counts their outcomes.
async fn record(shared: &Shared, batch: &[Ack]) {
    let mut failures = 0;
    let lost = loop {
        match shared.finish(batch).await {
            Ok(lost) => break Some(lost),
            Err(e) => {
                failures += 1;
                shared.backend_error("finish", &e, failures);
                if failures >= FINISH_TRIES {
                    // Left active: the stalled-job checker runs them again.
                    break None;
                }
                tokio::time::sleep(RETRY_BACKOFF.delay(failures)).await;
            }
        }
    };
    {
        let mut inflight = shared.inflight.lock().expect("not poisoned");
        for ack in batch {
            if inflight.get(&ack.id).is_some_and(|t| *t == ack.token) {
                inflight.remove(&ack.id);
            }
        }
    }
    let Some(lost) = lost else { return };
    let meters = shared.meters();
    for ack in batch {
        if lost.contains(&ack.id) {
            continue;
        }
        match ack.outcome {
            Outcome::Completed(_) => meters.completed.increment(1),
            Outcome::Retry { .. } => meters.retried.increment(1),
            Outcome::Failed(_) => meters.failed.increment(1),
            Outcome::Release => {}
        }
    }
    if !lost.is_empty() {
        meters.lost.increment(lost.len() as u64);
        tracing::warn!(queue = %shared.queue.name(), jobs = ?lost, "finished jobs whose lease was lost (another worker runs them)");
    }
}

impl Shared {
    /// Records `batch` in one FINISH call: the ids whose lease was lost.
    async fn finish(&self, batch: &[Ack]) -> Result<Vec<String>, QueueError> {
        let q = &self.queue.inner;
        let mut call = scripts::FINISH.call();
        call.key(&q.meta)
            .arg(&q.base)
            .arg(q.config.events_max_len)
            .arg(batch.len())
            .arg(&q.keep_completed)
            .arg(&q.keep_failed);
        for ack in batch {
            call.arg(&ack.id).arg(&*ack.token);
            match &ack.outcome {
                Outcome::Completed(v) => call.arg("c").arg(v).arg(0),
                Outcome::Retry { reason, delay_ms } => call.arg("r").arg(reason).arg(*delay_ms),
                Outcome::Failed(e) => call.arg("f").arg(e).arg(0),
                Outcome::Release => call.arg("l").arg("").arg(0),
            };
        }
        Ok(q.conn.invoke(&call).await?)
    }
}
