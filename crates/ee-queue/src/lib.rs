#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
mod admin;
mod config;
mod error;
mod flow;
mod job;
mod metrics;
mod queue;
mod repeat;
mod scripts;
mod worker;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use admin::{AdminConfig, AdminRouter, ShowData, admin_router};
pub use config::{QueueConfig, WorkerConfig};
pub use error::QueueError;
pub use flow::{FlowIds, FlowJob};
pub use job::{Backoff, JobInfo, JobOptions, JobState, Keep, MAX_PRIORITY};
pub use metrics::{
    METRIC_BACKEND_ERRORS_TOTAL, METRIC_DEPTH, METRIC_JOBS_TOTAL, METRIC_PROCESSING_SECONDS,
    METRIC_WAIT_SECONDS, describe_metrics,
};
pub use queue::{Counts, NewJob, Queue, QueueEvent};
pub use repeat::{Repeat, Schedule, Scheduler};
pub use worker::{Job, ShutdownReport, Worker, WorkerHandle};
