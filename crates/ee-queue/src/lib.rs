//! A durable Redis job queue for tower services, with what BullMQ users
//! rely on: delays, priorities, retries with backoff, de-duplication by job
//! id, retention, a queue-wide rate limit, pause and resume, lifecycle
//! events on a Redis Stream, and **at-least-once** delivery (a taken job
//! carries a lease its worker renews; the stalled-job checker gives the
//! jobs of a dead worker to another).
//!
//! Workers are tower [`Service`](tower::Service)s of [`Job<T>`], so any
//! tower layer (timeouts, metrics, tracing, rate limits) wraps them.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use ee_queue::{Job, JobOptions, Queue, Worker};
//! use ee_core::redis::RedisConfig;
//!
//! # async fn demo() -> Result<(), ee_queue::QueueError> {
//! let queue = Queue::connect(RedisConfig::standalone("redis://127.0.0.1:6379"), "emails").await?;
//! queue.add("welcome", &"ada@example.com", JobOptions::default()).await?;
//!
//! let send = tower::service_fn(|job: Job<String>| async move {
//!     println!("sending to {}", job.data);
//!     Ok::<_, Infallible>(())
//! });
//! let worker = Worker::new(queue, send).concurrency(20).start();
//! // … on SIGTERM: stop taking jobs, let running ones finish for up to 10 s.
//! worker.shutdown(std::time::Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! Keys are `ee:queue:{<name>}:…`: one hash tag per queue, so every
//! operation is one atomic script on one node, on standalone Redis and on
//! Redis Cluster alike. Time comes from Redis (`TIME`).

mod config;
mod error;
mod job;
pub mod metrics;
mod queue;
mod scripts;
mod worker;

pub use config::{QueueConfig, WorkerConfig};
pub use error::QueueError;
pub use job::{Backoff, JobInfo, JobOptions, JobState, Keep, MAX_PRIORITY};
pub use queue::{Counts, NewJob, Queue, QueueEvent};
pub use worker::{Job, ShutdownReport, Worker, WorkerHandle};
