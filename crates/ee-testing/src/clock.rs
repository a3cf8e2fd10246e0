//! A clock that only moves when the test moves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ee_core::Clock;

/// An [`ee_core::Clock`] that stands still until [`ManualClock::advance`] is
/// called. Clones share the same time.
///
/// ```
/// use ee_core::Clock;
/// use std::time::Duration;
///
/// let clock = ee_testing::ManualClock::new();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(90));
/// assert_eq!(clock.now() - start, Duration::from_secs(90));
/// let wall = clock.unix_ms();
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(clock.unix_ms(), wall + 1000); // the wall clock moves with it
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    start_unix_ms: u64,
    elapsed_nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at the present instant.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            start_unix_ms: ee_core::unix_ms(),
            elapsed_nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves time forward for this clock and every clone of it.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.elapsed_nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.elapsed_nanos.load(Ordering::SeqCst))
    }

    /// The wall clock when the clock was made, plus what it was advanced by.
    fn unix_ms(&self) -> u64 {
        self.start_unix_ms + self.elapsed_nanos.load(Ordering::SeqCst) / 1_000_000
    }
}
