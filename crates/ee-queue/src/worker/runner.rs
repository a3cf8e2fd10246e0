//! The Redis worker's runners: each runs a job, then the prefetched ones
//! the fetch loop queued meanwhile, and hands every outcome to the acker.

use std::fmt::Display;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tower::Service;

use super::acker::{Ack, send};
use super::execute::execute;
use super::fetch::{Shared, TakenJob};
use super::{Job, JobHandle};

/// A runner: runs `first`, then whatever the fetch loop queued meanwhile,
/// and gives its place back when the queue is empty.
pub(super) async fn run_jobs<T, S>(
    shared: Arc<Shared>,
    first: TakenJob,
    runner: OwnedSemaphorePermit,
    service: S,
    acks: mpsc::UnboundedSender<Ack>,
) where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let mut runner = Some(runner);
    let mut next = Some(first);
    while let Some(taken) = next {
        process(&shared, taken, service.clone(), &acks).await;
        let mut buffer = shared.buffer.lock().expect("not poisoned");
        next = buffer.pop_front();
        if next.is_none() {
            drop(runner.take());
        }
    }
}

/// Runs one job and hands its outcome to the acker.
async fn process<T, S>(
    shared: &Arc<Shared>,
    taken: TakenJob,
    service: S,
    acks: &mpsc::UnboundedSender<Ack>,
) where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let TakenJob { raw, token, slot } = taken;
    let id = raw.id.clone();
    let handle = JobHandle::Redis {
        queue: shared.queue.clone(),
        token: token.clone(),
    };
    let outcome = execute(raw, handle, service, shared.meters()).await;
    send(acks, id, token, outcome);
    drop(slot);
}
