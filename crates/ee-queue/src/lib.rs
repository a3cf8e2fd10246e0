#![doc = include_str!("../README.md")]

#[cfg(feature = "axum")]
pub mod admin;
mod config;
mod error;
mod flow;
mod job;
pub mod memory;
pub mod metrics;
mod queue;
mod repeat;
mod scripts;
mod worker;

pub use config::{QueueConfig, WorkerConfig};
pub use error::QueueError;
pub use flow::{FlowIds, FlowJob};
pub use job::{Backoff, JobInfo, JobOptions, JobState, Keep, MAX_PRIORITY};
pub use memory::{MemoryQueue, MemoryWorker};
pub use queue::{Counts, NewJob, Queue, QueueEvent};
pub use repeat::{Repeat, Schedule, Scheduler};
pub use worker::{Job, ShutdownReport, Worker, WorkerHandle};
