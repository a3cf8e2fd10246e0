//! Logging a recurring failure once per interval instead of once per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Says when a recurring event (a backend outage, a corrupt entry) should be
/// logged: at most once per interval, with how many were skipped since.
///
/// ```
/// use ee_core::LogThrottle;
/// use std::time::Duration;
///
/// let throttle = LogThrottle::new(Duration::from_secs(10));
/// assert_eq!(throttle.check(), Some(0)); // log this one
/// assert_eq!(throttle.check(), None); // skip (counted)
/// assert_eq!(throttle.check(), None);
/// ```
#[derive(Debug)]
pub struct LogThrottle {
    start: Instant,
    interval_ms: u64,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl LogThrottle {
    /// A throttle that lets one event through per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            start: Instant::now(),
            interval_ms: interval.as_millis().max(1) as u64,
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(skipped)` when this event should be logged (with the number of
    /// events skipped since the last one logged), `None` when it is skipped.
    pub fn check(&self) -> Option<u64> {
        // Offset by one interval so that the first event (at ~0 ms) passes.
        let now = self.start.elapsed().as_millis() as u64 + self.interval_ms;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.interval_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }

    /// Lets the next event through, as if the interval had passed (tests).
    pub fn reset(&self) {
        self.last_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_interval_and_the_rest_counted() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.check(), Some(0));
        for _ in 0..99 {
            assert_eq!(throttle.check(), None);
        }
        throttle.reset();
        assert_eq!(throttle.check(), Some(99));
        assert_eq!(throttle.check(), None);
    }
}
