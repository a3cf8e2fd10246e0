//! Time as a dependency, so TTLs and windows can be tested without sleeping.

use std::time::Instant;

/// A source of monotonic time. Layers that keep time in process (memory
/// backends, leases, windows) take a `Clock` so tests can move time by hand
/// (`ee_testing::ManualClock`) instead of sleeping.
pub trait Clock: Clone + Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real monotonic clock, [`Instant::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Instant {
        Instant::now()
    }
}
