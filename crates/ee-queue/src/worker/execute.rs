//! One attempt of one job, on either backend: decode the payload, run the
//! service in the producer's trace under the job's timeout with panics
//! caught, and say what to record.

use std::fmt::Display;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::{Service, ServiceExt};

use super::{Job, JobHandle};
use crate::job::JobOptions;
use crate::metrics::Meters;

/// A taken job as the backend stores it.
pub(crate) struct RawJob {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) data: String,
    pub(crate) attempts_made: u32,
    pub(crate) created_ms: u64,
    pub(crate) traceparent: String,
    /// Its options as JSON (empty: the defaults).
    pub(crate) options: String,
}

impl redis::FromRedisValue for RawJob {
    /// TAKE's `{id, name, data, attempts made, created ms, traceparent,
    /// options}`.
    fn from_redis_value(v: redis::Value) -> Result<Self, redis::ParsingError> {
        let (id, name, data, attempts_made, created_ms, traceparent, options) =
            redis::FromRedisValue::from_redis_value(v)?;
        Ok(Self {
            id,
            name,
            data,
            attempts_made,
            created_ms,
            traceparent,
            options,
        })
    }
}

/// What to record of one run.
pub(crate) enum Outcome {
    /// Done, with the handler's result (JSON).
    Completed(String),
    /// Failed with attempts left: run again after `delay_ms`.
    Retry {
        /// The failure.
        reason: String,
        /// The backoff before the next attempt.
        delay_ms: u64,
    },
    /// Failed for good, with the reason.
    Failed(String),
    /// Taken but never started (shutdown): back to the front of the queue,
    /// no attempt counted.
    Release,
}

/// Runs one taken job through `service` (decoded, in its producer's trace,
/// under its timeout, a panic caught) and says what to record: completed,
/// retried after the backoff, or failed for good.
pub(crate) async fn execute<T, S>(
    raw: RawJob,
    handle: JobHandle,
    service: S,
    meters: &Meters,
) -> Outcome
where
    T: DeserializeOwned + Send + 'static,
    S: Service<Job<T>> + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let options: JobOptions = if raw.options.is_empty() {
        JobOptions::default()
    } else {
        serde_json::from_str(&raw.options).unwrap_or_default()
    };
    let attempt = raw.attempts_made.saturating_add(1);
    let started = Instant::now();
    let data = match serde_json::from_str::<T>(&raw.data) {
        Ok(data) => data,
        // Decoding will not succeed on a retry: fail for good.
        Err(e) => {
            return Outcome::Failed(format!(
                "the payload does not decode as this worker's job type: {e}"
            ));
        }
    };
    let traceparent = (!raw.traceparent.is_empty()).then_some(raw.traceparent);
    let job = Job {
        id: raw.id,
        name: raw.name,
        data,
        attempt,
        created_ms: raw.created_ms,
        traceparent,
        handle,
    };
    let result = attempt_once(job, service, &options).await;
    meters.processing.record(started.elapsed().as_secs_f64());
    match result {
        Ok(value) => Outcome::Completed(value),
        Err(reason) if attempt < options.attempts.unwrap_or(1) => {
            let delay_ms = options.backoff.map_or(0, |b| {
                crate::job::millis(b.delay(attempt, rand::random::<f64>()))
            });
            Outcome::Retry { reason, delay_ms }
        }
        Err(reason) => Outcome::Failed(reason),
    }
}

/// Calls `service` with `job` in the producer's trace, under the job's
/// timeout, a panic caught: the result as JSON, or the failure.
async fn attempt_once<T, S>(job: Job<T>, service: S, options: &JobOptions) -> Result<String, String>
where
    T: Send + 'static,
    S: Service<Job<T>> + Send + 'static,
    S::Future: Send,
    S::Response: Serialize + Send,
    S::Error: Display + Send,
{
    let trace = job
        .traceparent
        .as_deref()
        .and_then(|tp| ee_logging::TraceContext::parse(tp, None))
        .map(|c| c.child());
    let call = async move {
        let mut service = service;
        let ready = service.ready().await.map_err(|e| e.to_string())?;
        ready.call(job).await.map_err(|e| e.to_string())
    };
    let call = AssertUnwindSafe(call).catch_unwind();
    let run = async move {
        match trace {
            Some(ctx) => ctx.scope(None, call).await,
            None => call.await,
        }
    };
    let run = match options.timeout {
        Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
            Ok(Err(format!(
                "the job timed out after {} ms",
                limit.as_millis()
            )))
        }),
        None => run.await,
    };
    match run {
        Ok(Ok(value)) => serde_json::to_string(&value)
            .map_err(|e| format!("the handler's result does not serialize: {e}")),
        Ok(Err(e)) => Err(e),
        Err(panic) => Err(format!("the handler panicked: {}", panic_message(&*panic))),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
