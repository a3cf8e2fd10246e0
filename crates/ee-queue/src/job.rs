//! Jobs, their options and their states.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::QueueError;

/// The highest priority number (BullMQ's bound): priorities are 1 (first)
/// to `MAX_PRIORITY` (last); 0, the default, means "no priority", and such
/// jobs are taken before prioritized ones, in the order they were added.
pub const MAX_PRIORITY: u32 = (1 << 21) - 1;

/// How long to wait before the next attempt of a failed job.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed {
        /// The delay, in milliseconds.
        delay_ms: u64,
        /// Up to this fraction (0.0-1.0) of the delay is taken off at
        /// random, so retries of many jobs that failed together spread out.
        #[serde(default)]
        jitter: f64,
    },
    /// `delay_ms × 2^(attempt − 1)`: 1×, 2×, 4×, … the delay.
    Exponential {
        /// The first retry's delay, in milliseconds.
        delay_ms: u64,
        /// As for `Fixed`.
        #[serde(default)]
        jitter: f64,
        /// The longest delay, in milliseconds (default: no bound).
        #[serde(default)]
        max_delay_ms: Option<u64>,
    },
}

impl Backoff {
    /// A fixed delay without jitter.
    pub fn fixed(delay: Duration) -> Self {
        Self::Fixed {
            delay_ms: millis(delay),
            jitter: 0.0,
        }
    }

    /// An exponential delay without jitter.
    pub fn exponential(first: Duration) -> Self {
        Self::Exponential {
            delay_ms: millis(first),
            jitter: 0.0,
            max_delay_ms: None,
        }
    }

    /// The same backoff with `jitter` (clamped to 0.0-1.0).
    #[must_use]
    pub fn with_jitter(mut self, fraction: f64) -> Self {
        let fraction = if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        match &mut self {
            Self::Fixed { jitter, .. } | Self::Exponential { jitter, .. } => *jitter = fraction,
        }
        self
    }

    /// The delay before retry number `retry` (1 for the first retry), with
    /// `random` (0.0-1.0) choosing the jitter, in whole milliseconds:
    /// computed by [`ee_core::Backoff`] (a fixed delay is one whose
    /// longest delay is its first; no bound is the longest delay there is).
    pub fn delay(&self, retry: u32, random: f64) -> Duration {
        let backoff = match *self {
            Self::Fixed { delay_ms, jitter } => {
                ee_core::Backoff::fixed(Duration::from_millis(delay_ms)).with_jitter(jitter)
            }
            Self::Exponential {
                delay_ms,
                jitter,
                max_delay_ms,
            } => ee_core::Backoff::new(
                Duration::from_millis(delay_ms),
                Duration::from_millis(max_delay_ms.unwrap_or(u64::MAX)),
            )
            .with_jitter(jitter),
        };
        // Whole milliseconds, rounded up: the jitter takes whole
        // milliseconds off (as it did before ee-core computed it).
        let ms = backoff
            .delay_with(retry, random)
            .as_nanos()
            .div_ceil(1_000_000);
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// How many finished jobs of a kind to keep, and for how long. A job past
/// either bound is deleted when a later job finishes. A field left out of a
/// configuration file is no bound: `keep_failed = { count = 100 }` keeps the
/// newest 100 failed jobs whatever their age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Keep {
    /// At most this many (newest first); `None`: no bound.
    pub count: Option<u64>,
    /// At most this old, in seconds; `None`: no bound.
    pub age_secs: Option<u64>,
}

impl Keep {
    /// Keep every job.
    pub const ALL: Keep = Keep {
        count: None,
        age_secs: None,
    };
    /// Delete the job as soon as it finishes.
    pub const NONE: Keep = Keep {
        count: Some(0),
        age_secs: None,
    };
    /// The default retention of completed jobs
    /// ([`QueueConfig::keep_completed`](crate::QueueConfig::keep_completed)):
    /// the newest 1 000, none older than a day.
    pub const COMPLETED: Keep = Keep {
        count: Some(1000),
        age_secs: Some(24 * 3600),
    };
    /// The default retention of failed jobs
    /// ([`QueueConfig::keep_failed`](crate::QueueConfig::keep_failed)): the
    /// newest 10 000, none older than 7 days.
    pub const FAILED: Keep = Keep {
        count: Some(10_000),
        age_secs: Some(7 * 24 * 3600),
    };

    /// Keep the newest `n`.
    pub fn last(n: u64) -> Self {
        Self {
            count: Some(n),
            age_secs: None,
        }
    }

    /// Keep those finished within `age`.
    pub fn for_at_most(age: Duration) -> Self {
        Self {
            count: None,
            age_secs: Some(age.as_secs()),
        }
    }

    /// As the scripts read it: `count:age_ms`, `-1` for no bound.
    pub(crate) fn encode(self) -> String {
        let c = self
            .count
            .map_or(-1, |c| i64::try_from(c).unwrap_or(i64::MAX));
        let a = self.age_secs.map_or(-1, |a| {
            i64::try_from(a.saturating_mul(1000)).unwrap_or(i64::MAX)
        });
        format!("{c}:{a}")
    }
}

impl Default for Keep {
    fn default() -> Self {
        Self::ALL
    }
}

/// Options of one job. `Default`: run now, no priority, one attempt, no
/// timeout, the queue's retention.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JobOptions {
    /// Run no earlier than this long after it is added.
    #[serde(with = "opt_ms", rename = "delay_ms")]
    pub delay: Option<Duration>,
    /// 1 (first) to [`MAX_PRIORITY`]; `0` (default) is "none", taken first.
    pub priority: u32,
    /// How many times to run it before it fails for good (default 1).
    pub attempts: Option<u32>,
    /// The wait between attempts (default: none).
    pub backoff: Option<Backoff>,
    /// An attempt running longer than this fails (and is retried if
    /// attempts remain).
    #[serde(with = "opt_ms", rename = "timeout_ms")]
    pub timeout: Option<Duration>,
    /// The job's id. Adding a job whose id exists is a no-op that returns
    /// the id (de-duplication). 1-128 characters, not all digits (those
    /// are the queue's own ids), no `{`, `}` or control characters.
    pub job_id: Option<String>,
    /// Retention once completed (default: the queue's).
    pub remove_on_complete: Option<Keep>,
    /// Retention once failed for good (default: the queue's).
    pub remove_on_fail: Option<Keep>,
}

impl JobOptions {
    /// Runs the job no earlier than `delay` from now.
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the priority (1 first … [`MAX_PRIORITY`] last).
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = priority;
        self
    }

    /// Runs the job up to `attempts` times, waiting `backoff` between them.
    #[must_use]
    pub fn attempts(mut self, attempts: u32, backoff: Backoff) -> Self {
        self.attempts = Some(attempts);
        self.backoff = Some(backoff);
        self
    }

    /// Fails an attempt that runs longer than `timeout`.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Gives the job an id of its own (de-duplication).
    #[must_use]
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }

    /// Retention once completed.
    #[must_use]
    pub fn remove_on_complete(mut self, keep: Keep) -> Self {
        self.remove_on_complete = Some(keep);
        self
    }

    /// Retention once failed for good.
    #[must_use]
    pub fn remove_on_fail(mut self, keep: Keep) -> Self {
        self.remove_on_fail = Some(keep);
        self
    }

    pub(crate) fn check(&self) -> Result<(), QueueError> {
        if self.priority > MAX_PRIORITY {
            return Err(QueueError::InvalidOption(format!(
                "priority {} is above the maximum {MAX_PRIORITY}",
                self.priority
            )));
        }
        if self.attempts == Some(0) {
            return Err(QueueError::InvalidOption(
                "attempts must be at least 1".into(),
            ));
        }
        if let Some(id) = &self.job_id {
            check_job_id(id)?;
        }
        Ok(())
    }
}

/// A job id given at `add`: usable as part of a key, and not one the queue
/// could generate.
pub(crate) fn check_job_id(id: &str) -> Result<(), QueueError> {
    let bad = |why: &str| Err(QueueError::InvalidOption(format!("job id {id:?}: {why}")));
    if id.is_empty() || id.len() > 128 {
        return bad("must be 1-128 bytes");
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return bad("must not be all digits (the queue numbers its own jobs)");
    }
    if id.chars().any(|c| c.is_control() || c == '{' || c == '}') {
        return bad("must not contain `{`, `}` or control characters");
    }
    Ok(())
}

/// A job name: what the job is (`"send-email"`), 1-256 bytes.
pub(crate) fn check_name(name: &str) -> Result<(), QueueError> {
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(QueueError::InvalidOption(format!(
            "job name {name:?} must be 1-256 bytes without control characters"
        )));
    }
    Ok(())
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Ready to run, without priority.
    Waiting,
    /// Ready to run, with a priority.
    Prioritized,
    /// Waiting for its delay (or its retry backoff) to pass.
    Delayed,
    /// Taken by a worker.
    Active,
    /// Done.
    Completed,
    /// Failed for good: the dead-letter set, until retried or removed.
    Failed,
    /// A flow's parent, waiting for its children to complete.
    WaitingChildren,
}

impl JobState {
    /// Every state, in the order the board shows them.
    pub const ALL: [JobState; 7] = [
        JobState::Waiting,
        JobState::Prioritized,
        JobState::Delayed,
        JobState::WaitingChildren,
        JobState::Active,
        JobState::Completed,
        JobState::Failed,
    ];

    /// The name (`"waiting"`, …, `"waiting-children"`).
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Prioritized => "prioritized",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::WaitingChildren => "waiting-children",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The suffix of the key that holds jobs in this state.
    pub(crate) fn key(self) -> &'static str {
        match self {
            JobState::Waiting => "wait",
            JobState::Prioritized => "prio",
            JobState::Delayed => "delayed",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::WaitingChildren => "wchild",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything stored about a job, as the admin API and [`Queue::job`](crate::Queue::job) show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobInfo {
    /// The id.
    pub id: String,
    /// The name given at `add`.
    pub name: String,
    /// Where it is now.
    pub state: JobState,
    /// The payload, as stored (JSON).
    pub data: serde_json::Value,
    /// The options given at `add`.
    pub options: JobOptions,
    /// Attempts made so far.
    pub attempts_made: u32,
    /// Times the job was found stalled (its worker's lease ran out).
    pub stalled: u32,
    /// When it was added (ms since the Unix epoch, Redis' clock).
    pub created_ms: u64,
    /// When its latest attempt started.
    pub processed_ms: Option<u64>,
    /// When it completed or failed for good.
    pub finished_ms: Option<u64>,
    /// The last attempt's error.
    pub failed_reason: Option<String>,
    /// The handler's result (JSON), once completed.
    pub return_value: Option<serde_json::Value>,
    /// The latest progress the handler reported.
    pub progress: Option<serde_json::Value>,
    /// The W3C `traceparent` of the code that added it.
    pub traceparent: Option<String>,
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::millis(*d)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_doubles_up_to_its_bound() {
        let b = Backoff::Exponential {
            delay_ms: 100,
            jitter: 0.0,
            max_delay_ms: Some(500),
        };
        let delays: Vec<u64> = (1..=5).map(|n| millis(b.delay(n, 0.7))).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn jitter_takes_off_at_most_its_fraction() {
        let b = Backoff::fixed(Duration::from_millis(1000)).with_jitter(0.25);
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(1000));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(750));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(875));
        assert_eq!(
            Backoff::fixed(Duration::from_secs(1)).with_jitter(f64::NAN),
            Backoff::fixed(Duration::from_secs(1))
        );
    }

    #[test]
    fn delays_without_jitter_are_exact_whole_milliseconds() {
        for delay_ms in [1, 7, 100, 300, 333, 1_000, 86_400_000] {
            let fixed = Backoff::fixed(Duration::from_millis(delay_ms));
            assert_eq!(millis(fixed.delay(4, 0.9)), delay_ms);
            let exp = Backoff::exponential(Duration::from_millis(delay_ms));
            let delays: Vec<u64> = (1..=4).map(|n| millis(exp.delay(n, 0.9))).collect();
            assert_eq!(delays, [1, 2, 4, 8].map(|f| delay_ms * f), "{delay_ms}");
        }
        // No bound: the delay doubles as far as a duration goes, without
        // overflowing.
        let huge = Backoff::exponential(Duration::from_secs(3600));
        assert!(huge.delay(u32::MAX, 0.5) >= huge.delay(30, 0.5));
    }

    #[test]
    fn jitter_takes_off_whole_milliseconds_as_it_always_did() {
        // The delay before ee-core computed it: the base less the jitter's
        // share, rounded down to whole milliseconds.
        let before = |base: u64, jitter: f64, random: f64| {
            let off = (base as f64 * jitter * random) as u64;
            base - off.min(base)
        };
        for base in [1, 3, 10, 99, 250, 1_000, 4_321, 60_000] {
            for jitter in [0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0] {
                for random in [0.0, 0.01, 0.123, 0.3, 0.5, 0.77, 0.999, 1.0] {
                    let b = Backoff::fixed(Duration::from_millis(base)).with_jitter(jitter);
                    assert_eq!(
                        millis(b.delay(2, random)),
                        before(base, jitter, random),
                        "{base} ms, jitter {jitter}, random {random}"
                    );
                }
            }
        }
    }

    #[test]
    fn job_ids_that_could_clash_are_refused() {
        for bad in ["", "42", "a{b}", "x\ny", &"z".repeat(129)] {
            assert!(check_job_id(bad).is_err(), "{bad:?}");
        }
        for good in ["order-42", "42a", "ünïcode"] {
            assert!(check_job_id(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn keep_encodes_for_the_scripts() {
        assert_eq!(Keep::ALL.encode(), "-1:-1");
        assert_eq!(Keep::NONE.encode(), "0:-1");
        assert_eq!(
            Keep::for_at_most(Duration::from_secs(60)).encode(),
            "-1:60000"
        );
    }
}
