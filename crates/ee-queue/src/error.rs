//! The crate's one error type, and the problems it answers with.

use ee_core::Problem;
use ee_core::RedisError;
use http::StatusCode;

/// What went wrong adding, fetching or managing jobs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The payload serialized to more bytes than the queue accepts (413).
    #[error("the job payload is {size} bytes, more than the queue's limit of {limit}")]
    PayloadTooLarge {
        /// The payload's size in bytes.
        size: usize,
        /// The queue's `max_payload_bytes`.
        limit: usize,
    },
    /// The payload could not be serialized (400).
    #[error("the job payload cannot be serialized: {0}")]
    Serialize(String),
    /// A job option is out of range, or a job id or name is malformed (400).
    #[error("{0}")]
    InvalidOption(String),
    /// No job has this id (404).
    #[error("no job `{0}` in this queue")]
    NotFound(String),
    /// The job is not in a state that allows the operation (409).
    #[error("job `{id}` is {state}; {action} needs it {needs}")]
    WrongState {
        /// The job.
        id: String,
        /// Its state now.
        state: String,
        /// What was asked.
        action: &'static str,
        /// The state(s) the action needs.
        needs: &'static str,
    },
    /// Redis could not be reached or did not answer in time (503).
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error, or with a reply this crate did not
    /// expect (500).
    #[error("redis error: {0}")]
    Backend(String),
    /// The queue's backend cannot do this: events, flows, repeatable jobs
    /// and `advance_clock` need a Redis queue, and this one lives in the
    /// process's memory ([`Queue::memory`](crate::Queue::memory)). A set-up
    /// error (500) whose message says what to use instead.
    #[error(
        "`{operation}` needs a Redis queue; this queue is in process memory (open it with `Queue::connect` to use it)"
    )]
    Unsupported {
        /// The operation asked for (`"events"`, `"add_flow"`, …).
        operation: &'static str,
    },
}

impl From<RedisError> for QueueError {
    fn from(e: RedisError) -> Self {
        if e.is_unavailable() {
            Self::Unavailable(e.to_string())
        } else {
            Self::Backend(e.to_string())
        }
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        RedisError::from(e).into()
    }
}

impl QueueError {
    /// The HTTP status, for the admin API.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Serialize(_) | Self::InvalidOption(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::WrongState { .. } => StatusCode::CONFLICT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Backend(_) | Self::Unsupported { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The problem type's last segment (`https://ee.rs/problems/queue/<kind>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::Serialize(_) => "unserializable-payload",
            Self::InvalidOption(_) => "invalid-option",
            Self::NotFound(_) => "job-not-found",
            Self::WrongState { .. } => "wrong-state",
            Self::Unavailable(_) => "unavailable",
            Self::Backend(_) => "backend-error",
            Self::Unsupported { .. } => "unsupported",
        }
    }
}

/// The error as an RFC 9457 problem: `https://ee.rs/problems/queue/<kind>`
/// with [`QueueError::status`], the message as its detail.
impl From<QueueError> for Problem {
    fn from(e: QueueError) -> Self {
        Problem::ee(e.status(), "queue", e.kind()).with_detail(e.to_string())
    }
}
